// SPDX-License-Identifier: GPL-2.0
/*
 * hello_module.c - Says hello
 *
 * Build:  make            (or: kmod-py build)
 * Load:   insmod hello_module.ko && dmesg | tail    (or: kmod-py test)
 */

#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/init.h>
#include <linux/module.h>
#include <linux/printk.h>

static int __init hello_module_mod_init(void)
{
	pr_info("loaded\n");
	return 0;
}

static void __exit hello_module_mod_exit(void)
{
	pr_info("unloaded\n");
}

module_init(hello_module_mod_init);
module_exit(hello_module_mod_exit);

MODULE_LICENSE("GPL");
MODULE_AUTHOR("Ada Lovelace <ada@example.org>");
MODULE_DESCRIPTION("Says hello");
MODULE_VERSION("0.1.0");
