"""Reading codes and text from a still, and finding faces to blur (issue #17).

classify (pure: what a read string is), read (zxing-cpp and tesseract on one image),
faces (OpenCV's Haar cascade from its wheel, and the blur), pool (the one bounded worker
pool), api (POST /api/sessions/{id}/inspect), cli (`callassist inspect IMAGE`).
"""
