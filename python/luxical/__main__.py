from luxical.cli import main; raise SystemExit(main())
