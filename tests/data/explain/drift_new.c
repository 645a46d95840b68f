// SPDX-License-Identifier: GPL-2.0
/* Written for 7.x: the kernel API as it is there. */
#include <linux/module.h>
#include <linux/device.h>
#include <linux/platform_device.h>
#include <linux/semaphore.h>
#include <linux/timer.h>

struct drift_state {
	struct timer_list timer;
	int fired;
};

static struct class *drift_class;
static struct drift_state drift_state;
static DEFINE_SEMAPHORE(drift_sem, 1);

static void drift_fire(struct timer_list *t)
{
	struct drift_state *s = timer_container_of(s, t, timer);

	s->fired = 1;
}

static void drift_remove(struct platform_device *pdev)
{
}

static struct platform_driver drift_driver = {
	.remove = drift_remove,
	.driver = { .name = "drift_new" },
};

static int __init drift_init(void)
{
	timer_setup(&drift_state.timer, drift_fire, 0);
	drift_class = class_create("drift_new");
	if (IS_ERR(drift_class))
		return PTR_ERR(drift_class);
	down(&drift_sem);
	up(&drift_sem);
	return platform_driver_register(&drift_driver);
}

static void __exit drift_exit(void)
{
	timer_delete_sync(&drift_state.timer);
	platform_driver_unregister(&drift_driver);
	class_destroy(drift_class);
}

module_init(drift_init);
module_exit(drift_exit);
MODULE_LICENSE("GPL");
