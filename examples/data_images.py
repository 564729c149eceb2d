"""Processing a directory of images with Ray Data (seed 000 "Processing images").

The seed crops 100 random 300x300 images out of a photo with ImageMagick; here they are
cropped with Pillow out of a generated 1000x800 picture, into a temporary directory.
The rest is the seed's code with `import rayling as ray`.
"""

import os
import random
import tempfile

import numpy as np
from PIL import Image

import rayling as ray

folder = tempfile.mkdtemp()
os.makedirs(os.path.join(folder, "images"))
y, x = np.mgrid[0:800, 0:1000]
picture = Image.fromarray(np.stack([x % 256, y % 256, (x + y) % 256], axis=-1).astype(np.uint8))
random.seed(1)
for num in range(100):   # crop it into hundred 300x300 random images
    left, top = random.randint(0, 1000 - 300), random.randint(0, 800 - 300)
    picture.crop((left, top, left + 300, top + 300)).save(os.path.join(folder, "images", f"small{num:02d}.png"))
os.chdir(folder)

ds = ray.data.read_images("images/")
print("count:", ds.count())
ds.take(1)[0]                  # first image
print("type:", type(ds.take(1)[0]["image"]))   # stored as a numpy array
print("shape:", ds.take(1)[0]["image"].shape)   # 300x300 and three channels (RGB)
print("max:", ds.take(1)[0]["image"].max())   # 255 => they are stored as 8-bit images (0..255)

def minmax(row):
    print(row["image"].min(), row["image"].max())
    return row  # must return a dictionary, otherwise `map` will fail

b = ds.map(minmax)   # on output; we scheduled the calculation, but have not started it yet
b.materialize()      # force the calculation => now we see printouts from individual rows

def negate(row):
    return {'image': 255-row['image']}

negative = ds.map(negate)
negative.write_images("output", column='image')
print("written:", len(os.listdir("output")))
first = sorted(os.listdir("images"))[0]
print("negated:", bool((np.asarray(Image.open(os.path.join("images", first))).astype(int) + ray.data.read_images("output").take(1)[0]["image"] == 255).all()))
