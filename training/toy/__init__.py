"""The toy DreamO, trained end to end on a CPU (``python -m training.demo``): ``constants`` (its numbers),
``world`` (subjects, scenes, held-out split), ``codec`` (its exact codec, also as a diffusers VAE), ``datasets``
(training rows, held-out cases), ``base`` (the text-to-image base trained from scratch), ``metrics`` (the subject
detector, intervals), ``evaluation`` (sampling and scores), ``generate`` (the exported file in the ``dreamo``
generator), ``report`` and ``demo`` (the whole run), ``synthetic`` (rows of this world at any size for the
trainer's tests), ``subject_tuning`` (subject tuning measured on the toy)."""
