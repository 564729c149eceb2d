"""Large 3-D arrays inside dataset rows (seed 002 "Simple distributed dataset example").

Seed code with `import rayling as ray`; the arrays are 100x100x100 instead of 800x800x800
(3.81 GB each). rayling has no object spilling; the seed's flag that turns it off is
accepted and ignored.
"""

import numpy as np
import rayling as ray

ray.init(configure_logging=False, _system_config={ 'automatic_object_spilling_enabled':False })

b = ray.data.from_items([(100,100,100), (100,100,100)])
b.show()

def initArray(row):
    nx, ny, nz = row['item']
    row['array'] = np.zeros((nx,ny,nz))
    return row

c = b.map(initArray)
c.show()

d = c.take()
print("type:", type(d[0]['array']))   # numpy.ndarray
print("shape:", d[0]['array'].shape)   # (100, 100, 100)

ray.shutdown()
