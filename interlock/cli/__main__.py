from interlock.cli.main import main

main()
