from fedjax_rhd.cli import main

main()
