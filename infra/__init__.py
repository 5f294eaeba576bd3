"""Local stack and CI helpers: a moto server with the template's resources (``moto_stack``), the
functions under the Lambda Runtime Interface Emulator (``rie``), an SQS event source mapping emulator
(``poller``) and a fault-injecting proxy (``faults``). Everything binds 127.0.0.1."""
