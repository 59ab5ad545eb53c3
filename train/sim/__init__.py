"""The SNR-ladder simulator's parts (the public entry points are in ``nmrladder.train.simulate``).

- ``signal``: sums of damped exponentials and the real FFT of a processed FID;
- ``options``: the options, their validation and the legacy per-nucleus presets;
- ``family`` and ``families``: the spectrum families (1H high field, 1H benchtop, 13C{1H}, 19F,
  31P{1H}), one module each (``family_*``), drawing the sample's lines;
- ``spins``: exact lines of small strongly coupled spin systems;
- ``multiplets``: first-order multiplets;
- ``lines``: every line of a sample (the family's, reference, weak peaks, solvent);
- ``sample``: one ladder from its lines (FID, noise, drift, normalisation) and the
  structure-known oracle fit;
- ``store``: the ``Ladders`` container and its HDF5 file.
"""
