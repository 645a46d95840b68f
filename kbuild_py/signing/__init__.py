"""Module signing: keys and certificates (keys), signing with the kernel's own sign-file
(sign), and verifying an appended signature against a certificate the way the kernel's
module loader does (verify).

Libraries: `cryptography` makes keys and certificates and checks signatures;
`asn1crypto` reads the PKCS#7/CMS SignedData (in kbuild_py.check.elf.signature, shared with
modinfo's view). Both are imported only by the functions that need them, so commands
that never touch a signature do not pay for them.
"""
