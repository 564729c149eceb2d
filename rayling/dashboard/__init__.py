"""The dashboard the head serves in a browser: ``server.py`` is its process (aiohttp),
``static/`` its pages (plain HTML, CSS and JavaScript, loaded from nowhere else)."""
