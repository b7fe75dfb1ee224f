"""How the stream runs: the batch commit protocol, recovery, and the loop's chores.

* :mod:`.commit` -- one batch made durable and visible, in numbered steps;
* :mod:`.recovery` -- which failures are whose, and the backoff before resuming;
* :mod:`.gc` -- garbage collection between batches rather than during them;
* :mod:`.history` -- the segment-size history kept for the report;
* :mod:`.summary` -- what one run did.
"""
