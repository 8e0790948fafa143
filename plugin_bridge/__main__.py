from plugin_bridge.cli import main

raise SystemExit(main())
