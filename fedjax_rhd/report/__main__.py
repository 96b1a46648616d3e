from fedjax_rhd.report import main

main()
