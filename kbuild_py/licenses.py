"""Module licenses as the kernel sees them (include/linux/license.h)."""

from __future__ import annotations

# license_is_gpl_compatible(): exact, case-sensitive strings. Anything else taints (P)
# and hides EXPORT_SYMBOL_GPL symbols from the module.
GPL_COMPATIBLE = (
    "GPL",
    "GPL v2",
    "GPL and additional rights",
    "Dual BSD/GPL",
    "Dual MIT/GPL",
    "Dual MPL/GPL",
)
