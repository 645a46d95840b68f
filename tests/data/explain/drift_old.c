// SPDX-License-Identifier: GPL-2.0
/* Written for 6.1: the kernel API as it was there. */
#include <linux/module.h>
#include <linux/device.h>
#include <linux/fs.h>
#include <linux/hid.h>
#include <linux/platform_device.h>
#include <linux/semaphore.h>
#include <linux/string.h>
#include <linux/timer.h>

struct drift_state {
	struct timer_list timer;
	int fired;
};

static struct class *drift_class;
static struct drift_state drift_state;
static DEFINE_SEMAPHORE(drift_sem);
static char drift_name[16];

static int drift_helper(int x)
{
	return x + 1;
}

static void drift_fire(struct timer_list *t)
{
	struct drift_state *s = from_timer(s, t, timer);

	s->fired = 1;
}

static int drift_remove(struct platform_device *pdev)
{
	return 0;
}

static struct platform_driver drift_driver = {
	.remove = drift_remove,
	.driver = { .name = "drift_old" },
};

static __u8 *drift_fixup(struct hid_device *hdev, __u8 *buf, unsigned int *size)
{
	return buf;
}

static struct hid_driver drift_hid = {
	.name = "drift_old",
	.report_fixup = drift_fixup,
};

static const struct file_operations drift_fops = {
	.owner = THIS_MODULE,
	.llseek = no_llseek,
};

static int __init drift_init(void)
{
	strlcpy(drift_name, "drift", sizeof(drift_name));
	timer_setup(&drift_state.timer, drift_fire, 0);
	drift_class = class_create(THIS_MODULE, "drift_old");
	if (IS_ERR(drift_class))
		return PTR_ERR(drift_class);
	down(&drift_sem);
	up(&drift_sem);
	(void)drift_fops;
	(void)drift_hid;
	return drift_helpr(0) ? platform_driver_register(&drift_driver) : 0;
}

static void __exit drift_exit(void)
{
	del_timer_sync(&drift_state.timer);
	platform_driver_unregister(&drift_driver);
	class_destroy(drift_class);
}

module_init(drift_init);
module_exit(drift_exit);
MODULE_LICENSE("GPL");

/* Return type changed: cpufreq_unregister_driver() returns void from 6.3 on. */
#include <linux/cpufreq.h>

static int __maybe_unused drift_cpufreq_gone(struct cpufreq_driver *drv)
{
	int ret = cpufreq_unregister_driver(drv);

	return ret;
}
