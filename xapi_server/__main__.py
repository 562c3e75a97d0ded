import gc

# Importing the server makes hundreds of thousands of objects that live as long as the
# process: the cyclic collector, run again and again while they are made, only costs
# start-up time. Once imported they are frozen out of its later sweeps (gc.freeze), so
# a full collection while serving does not walk every function and class again.
gc.disable()
from .main import main  # noqa: E402
gc.freeze()
gc.enable()

main()
