from layer.cli import main

raise SystemExit(main())
