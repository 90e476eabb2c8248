"""The former home of the LV tasks, kept so that `from sonokit.echo.tasks_lv import ...` still works.

The shared base is in lv_base.py, `lv-seg` in lv_seg.py and `lv-trace` in lv_trace.py; import from those.
"""

from sonokit.echo.lv_base import LVOptions, LVTask
from sonokit.echo.lv_seg import LVSegTask
from sonokit.echo.lv_trace import LVTraceOptions, LVTraceTask

__all__ = ["LVOptions", "LVSegTask", "LVTask", "LVTraceOptions", "LVTraceTask"]
