"""The spool: a bounded on-disk FIFO of events between reading and sending,
so that a slow or absent output costs neither memory nor data.

    reader --append--> DiskQueue --take--> batcher --> outputs --ack--> DiskQueue

MUST (end-to-end acknowledgement): spool space is freed only by ``ack``,
after the output confirmed delivery; a segment file is deleted only when
every record in it is acknowledged.

Modules, in the order data goes through them:

* ``frames``   segment header and record frame format, resynchronisation after damage;
* ``segment``  segment and ack files on disk, reading frames back, ``Taken``/``RefRun``;
* ``recovery`` what ``open`` does with the files it finds; ``Recovery``;
* ``cache``    the newest batches kept in memory, so a consumer that keeps up skips the disk;
* ``queue``    ``DiskQueue``: open, append, space bound, fsync policy, threads; its
               read side (``take``: ``TakeMixin``) and its acknowledging side
               (``ack``: ``AckMixin``, sealing and deleting segments) are modules of their own;
* ``memory``   ``MemoryQueue``: the same interface without a disk (``--no-spool``), so
               the agent has one delivery path whichever queue it uses.
"""

from agent.spool.memory import MemoryQueue
from agent.spool.queue import FSYNC_POLICIES, DiskQueue
from agent.spool.recovery import Recovery
from agent.spool.segment import RefRun, SpooledEvent, Taken

__all__ = ["FSYNC_POLICIES", "DiskQueue", "MemoryQueue", "Recovery", "RefRun", "SpooledEvent", "Taken"]
