"""ObjectRef: a future for a value in the cluster's object store.

A ref is hashable and comparable by id, prints its hex id, and can be pickled into
arguments and other objects (it stays a ref there). It is defined in
``rayling._private.object_ref``, where the client that counts refs can use it. A
generator task returns an ObjectRefGenerator (``rayling._private.generators``).
"""

from ._private.generators import DynamicObjectRefGenerator, ObjectRefGenerator
from ._private.object_ref import ObjectRef

__all__ = ["DynamicObjectRefGenerator", "ObjectRef", "ObjectRefGenerator"]
