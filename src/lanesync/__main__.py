from lanesync.cli.main import main

main()
