from brproxy.cli import main

main()
