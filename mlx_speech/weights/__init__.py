"""Weights core, framework-free: parameter layouts by declared kind (:mod:`.layout`), the
module walk that reads those kinds (:mod:`.core`), tagged safetensors files and safe pickle
reading (:mod:`.checkpoint`) and the one strict key check (:mod:`.strict`). Only :mod:`.mlx`
imports mlx (inside its calls); torch_ref's side is :mod:`torch_ref.weights`."""
