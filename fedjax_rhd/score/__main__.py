from fedjax_rhd.score import main

main()
