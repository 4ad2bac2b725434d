"""MIDS, FFAA's decision module: a small image-text network that scores how well each candidate
answer matches the face, and the selector that turns those scores into the final verdict.

Importing this package is cheap (no torch). Import the submodule you need:

* `ffaa.mids.selector`   - FFAA's selection rule on plain numbers (no torch);
* `ffaa.mids.net`        - the network (`MidsNet`, `MidsConfig`, builders);
* `ffaa.mids.checkpoint` - safe loading of `mids.pth` / our safetensors, `convert_mids`;
* `ffaa.mids.preprocess` - CLIP pixels and T5 tokens as FFAA computes them;
* `ffaa.mids.decider`    - `MidsDecider`, the `ffaa.decision.Decider` backed by MIDS;
* `ffaa.mids.heatmap`    - Grad-CAM over the CLIP patch grid;
* `ffaa.mids.data`, `ffaa.mids.train` - training data schema and the training loop.
"""

# `mids/` sits at the top of the checkout but is the package `ffaa.mids`. With the checkout's root
# on sys.path (`python app.py`, `python -c` there) it could also load as plain `mids`, and each of
# its modules a second time beside `ffaa.mids.*`, with classes of their own: refuse that name.
if __name__ != "ffaa.mids":
    raise ImportError(f"import ffaa.mids, not {__name__}: mids/ is installed as the package ffaa.mids",
                      name=__name__)
