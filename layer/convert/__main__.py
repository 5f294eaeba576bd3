from layer.convert.cli import main

raise SystemExit(main())
