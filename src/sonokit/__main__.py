from sonokit.cli.main import main

main()
