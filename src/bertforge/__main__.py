from bertforge.cli import main

raise SystemExit(main())
