"""Synthetic translocations spliced from two normal chromosomes of one metaphase.

A reciprocal translocation leaves a derivative chromosome whose end carries a segment of its
partner, painted in the partner's M-FISH colour code (the positives of the label-check grids look
exactly so).  :func:`splice` makes one: the terminal share ``f`` of a *recipient* chromosome (cut
across its principal axis, at a random end) takes its fluorophore planes from the matching end of a
*donor* of another class, read along the donor's own principal axis (:func:`scipy.ndimage.map_coordinates`),
so the segment keeps the donor's real texture and intensity.  The recipient's DAPI plane and outline
stay as they are.  Donor points that fall outside the donor are filled with the donor's mean colour
scaled by the recipient's DAPI.  Donor and recipient come from one metaphase, so the probe set and the
staining are the same.

This is a hand-made generator of the rare class, built from the labelling rule itself (a chromosome
with ≥ 10 % of its partner's code); it is used only for training crops and never for validation or
test.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

FRACTION = (0.15, 0.5)


def principal_frame(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Centre, unit long axis and unit cross axis (row, column vectors) of a binary mask."""
    points = np.argwhere(mask).astype(np.float64)
    centre = points.mean(axis=0)
    if len(points) < 2:
        return centre, np.array([1.0, 0.0]), np.array([0.0, 1.0])
    _, vectors = np.linalg.eigh(np.cov((points - centre).T))
    long_axis = vectors[:, -1]
    return centre, long_axis, np.array([-long_axis[1], long_axis[0]])


def splice(recipient: np.ndarray, donor: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """A C×H×W crop (plane 0 DAPI, planes 1… fluorophores, background 0): ``recipient`` with its terminal
    ``fraction`` painted from the end of ``donor``.  Returns a new array of the recipient's dtype."""
    if recipient.shape != donor.shape or recipient.ndim != 3 or recipient.shape[0] < 2:
        raise ValueError(f"splice needs two C×H×W crops with DAPI and ≥ 1 fluorophore plane, got "
                         f"{recipient.shape} and {donor.shape}")
    if not 0 < fraction < 1:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    own, their = recipient.any(axis=0), donor.any(axis=0)
    if own.sum() < 2 or their.sum() < 2:
        raise ValueError("splice needs a recipient and a donor with chromosome pixels")
    centre, axis, cross = principal_frame(own)
    points = np.argwhere(own).astype(np.float64)
    along = (points - centre) @ axis * rng.choice([-1.0, 1.0])
    segment = along >= np.quantile(along, 1 - fraction)
    depth = along.max() - along[segment]
    offset = (points[segment] - centre) @ cross

    donor_centre, donor_axis, donor_cross = principal_frame(their)
    donor_axis = donor_axis * rng.choice([-1.0, 1.0])
    donor_along = (np.argwhere(their) - donor_centre) @ donor_axis
    source = (donor_centre + np.outer(donor_along.max() - depth, donor_axis) + np.outer(offset, donor_cross)).T
    inside = ndimage.map_coordinates(their.astype(np.float64), source, order=1) >= 0.5

    out = recipient.copy()
    rows, cols = points[segment].astype(int).T
    dapi = recipient[0, rows, cols].astype(np.float64)
    donor_dapi = donor[0][their].astype(np.float64).mean()
    top = np.iinfo(recipient.dtype).max if recipient.dtype.kind in "iu" else np.inf
    for plane in range(1, recipient.shape[0]):
        read = ndimage.map_coordinates(donor[plane].astype(np.float64), source, order=1)
        mean_colour = donor[plane][their].astype(np.float64).mean()
        filled = np.where(inside, read, mean_colour * dapi / max(donor_dapi, 1e-6))
        out[plane, rows, cols] = np.clip(np.rint(filled) if top != np.inf else filled, 0, top).astype(out.dtype)
    return out


def spliced_set(images: np.ndarray, classes: np.ndarray, metaphases: np.ndarray, candidates: np.ndarray,
                n: int, seed: int, fraction: tuple[float, float] = FRACTION) -> dict[str, np.ndarray]:
    """``n`` spliced crops from the chromosomes ``candidates`` (indices into ``images``, N×C×H×W): each a
    random recipient with a donor of another class from its metaphase.  Returns ``images``, the
    ``recipient`` and ``donor`` indices and the ``fraction`` of each."""
    if n < 1:
        raise ValueError(f"n must be ≥ 1, got {n}")
    rng = np.random.default_rng(seed)
    candidates = np.asarray(candidates)
    donors_of = {}
    for index in candidates:
        same = candidates[(metaphases[candidates] == metaphases[index]) & (classes[candidates] != classes[index])]
        if same.size:
            donors_of[int(index)] = same
    if not donors_of:
        raise ValueError("no metaphase has two chromosomes of different classes among the candidates")
    recipients = rng.choice(sorted(donors_of), size=n)
    out = {"images": np.empty((n, *images.shape[1:]), images.dtype), "recipient": recipients,
           "donor": np.empty(n, np.int64), "fraction": rng.uniform(*fraction, size=n)}
    for k, recipient in enumerate(recipients):
        out["donor"][k] = rng.choice(donors_of[int(recipient)])
        out["images"][k] = splice(images[recipient], images[out["donor"][k]], out["fraction"][k], rng)
    return out
