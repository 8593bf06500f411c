"""The profile kinds an agent can hold: PV orientations and demand kinds (names shared by every
profile source, so presets and populations name kinds, not table rows)."""

from __future__ import annotations

# name: (azimuth in degrees clockwise from north, tilt in degrees from horizontal)
PV_ORIENTATIONS: dict[str, tuple[float, float]] = {
    "south": (180.0, 30.0),
    "south_flat": (180.0, 10.0),
    "east": (90.0, 30.0),
    "west": (270.0, 30.0),
    "southeast": (135.0, 30.0),
    "southwest": (225.0, 30.0),
}

# name: what it is (BDEW standard load profiles h0-l2; two flexible loads)
DEMAND_KINDS: dict[str, str] = {
    "h0": "household (BDEW H0, dynamised over the year)",
    "g0": "commercial, general (BDEW G0)",
    "g1": "commercial, weekdays 8-18 h: office, workshop (BDEW G1)",
    "g2": "commercial, evening consumption: restaurant, leisure (BDEW G2)",
    "g3": "commercial, continuous: cold store, pumping (BDEW G3)",
    "g4": "shop, hairdresser (BDEW G4)",
    "g5": "bakery with baking room (BDEW G5)",
    "g6": "weekend business: cinema, sports (BDEW G6)",
    "l0": "agriculture, general (BDEW L0)",
    "l1": "agriculture with dairy or livestock (BDEW L1)",
    "l2": "other agriculture (BDEW L2)",
    "ev": "electric-vehicle home charging: evening arrival, uncharged overnight (fleet model)",
    "heat_pump": "air-source heat pump: BDEW single-family heat demand / temperature-dependent COP",
}

PV_KINDS: tuple[str, ...] = tuple(PV_ORIENTATIONS)
DEMAND_KIND_NAMES: tuple[str, ...] = tuple(DEMAND_KINDS)


def kind_index(field: str, name: str, kinds: tuple[str, ...]) -> int:
    """Row of kind ``name`` in a source's ``kinds``; ValueError naming the field otherwise."""
    if name not in kinds:
        raise ValueError(f"{field}: got {name!r}; allowed: one of {', '.join(kinds)}")
    return kinds.index(name)
