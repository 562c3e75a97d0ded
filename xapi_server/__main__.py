import gc

# Importing the server makes hundreds of thousands of objects that live as long as the
# process: the cyclic collector, run again and again while they are made, only costs
# start-up time. Once imported they are frozen out of its later sweeps (gc.freeze), so
# a full collection while serving does not walk every function and class again.
gc.disable()
from .gcpolicy import bound_old_generation  # noqa: E402
from .main import main  # noqa: E402
gc.freeze()
gc.enable()
# Full collections a tenth as often as Python's default: a big reply (event.from of
# 10,000 VMs makes 40,000 events) otherwise set off several, each walking every
# unfrozen object; in-process that halved the CPU of collecting those events
# (0.18-0.26 -> 0.12-0.14 s). Young objects are still collected as often.
young, middle, _full = gc.get_threshold()
gc.set_threshold(young, middle, 100)
# The records made while serving are frozen too, in steps, so that no full collection
# walks more than a bounded number of objects.
bound_old_generation()

main()
