from chatsvc.cli import main

raise SystemExit(main())
