from kbuild_py.cli import main

main()
