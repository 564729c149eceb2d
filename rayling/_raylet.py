"""Names scripts import from Ray's ``ray._raylet`` (its compiled core), found here under
the same path: ObjectRef, the generator types and the id classes."""

from __future__ import annotations

from ._private.generators import DynamicObjectRefGenerator, ObjectRefGenerator
from ._private.ids import ActorID, JobID, NodeID, TaskID
from ._private.object_ref import ObjectRef

# Ray's older name for a streaming generator.
StreamingObjectRefGenerator = ObjectRefGenerator

__all__ = ["ActorID", "DynamicObjectRefGenerator", "JobID", "NodeID", "ObjectRef",
           "ObjectRefGenerator", "StreamingObjectRefGenerator", "TaskID"]
