from triggerhub.cli import main

main()
