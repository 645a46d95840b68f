"""Reading a module file: ELF sections, symbols, signature, Module.symvers."""
