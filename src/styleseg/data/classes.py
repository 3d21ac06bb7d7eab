"""Class maps: which source labels become which training classes, their colours, and the
coarse-to-fine hierarchy that class growth walks through.

A class map turns source label names (CCP's 59 labels, or the names in a paired dataset's
classes.json) into class ids 0..K-1, with 0 always background. `coarse_levels` lists groupings
of those classes from coarsest to finest; training can start segmentation at the coarsest level
and split groups into their members later.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from styleseg.errors import DataError

BACKGROUND = "background"

CCP_LABELS = (
    "null accessories bag belt blazer blouse bodysuit boots bra bracelet cape cardigan clogs coat dress "
    "earrings flats glasses gloves hair hat heels hoodie intimate jacket jeans jumper leggings loafers "
    "necklace panties pants pumps purse ring romper sandals scarf shirt shoes shorts skin skirt sneakers "
    "socks stockings suit sunglasses sweater sweatshirt swimwear t-shirt tie tights top vest wallet watch "
    "wedges"
).split()

_CCP12_GROUPS: dict[str, str] = {
    "background": "null",
    "skin": "skin",
    "hair": "hair",
    "top": "blouse bodysuit bra hoodie intimate jumper shirt sweater sweatshirt t-shirt top vest",
    "outerwear": "blazer cape cardigan coat jacket suit",
    "dress": "dress romper swimwear",
    "pants": "jeans leggings pants",
    "skirt-shorts": "panties shorts skirt",
    "legwear": "socks stockings tights",
    "footwear": "boots clogs flats heels loafers pumps sandals shoes sneakers wedges",
    "bag": "bag purse wallet",
    "accessories": "accessories belt bracelet earrings glasses gloves hat necklace ring scarf sunglasses tie watch",
}

_CCP12_PALETTE = {
    "background": (0, 0, 0),
    "skin": (255, 204, 153),
    "hair": (128, 64, 0),
    "top": (230, 25, 75),
    "outerwear": (0, 130, 200),
    "dress": (240, 50, 230),
    "pants": (70, 240, 240),
    "skirt-shorts": (245, 130, 48),
    "legwear": (128, 128, 0),
    "footwear": (60, 180, 75),
    "bag": (145, 30, 180),
    "accessories": (255, 225, 25),
}

# Middle level of the CCP hierarchy: body, clothing and carried items split before the fine classes.
_CCP12_MIDDLE = {
    "background": ["background"],
    "body": ["skin", "hair"],
    "clothing": ["top", "outerwear", "dress", "pants", "skirt-shorts", "legwear"],
    "footwear": ["footwear"],
    "carried": ["bag", "accessories"],
}


def voc_palette(n: int) -> list[tuple[int, int, int]]:
    """The PASCAL VOC colour map: distinct, deterministic colours for any number of classes."""
    colors = []
    for i in range(n):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        colors.append((r, g, b))
    return colors


@dataclass(frozen=True)
class Level:
    """One level of the class hierarchy: K groups, each a set of fine classes."""

    names: tuple[str, ...]
    palette: tuple[tuple[int, int, int], ...]
    fine_to_group: tuple[int, ...]  # fine class id -> group id at this level

    @property
    def num_classes(self) -> int:
        return len(self.names)


@dataclass(frozen=True)
class ClassMap:
    """Source labels -> training classes, with palette and coarse-to-fine levels."""

    name: str
    classes: tuple[str, ...]
    """Class names; the index is the class id and class 0 is background."""
    palette: tuple[tuple[int, int, int], ...]
    """One RGB colour per class, distinct."""
    source_to_class: dict[str, str] = field(default_factory=dict)
    """Source label name -> class name. Empty means identity (source labels are the classes)."""
    coarse_levels: tuple[tuple[tuple[str, tuple[str, ...]], ...], ...] = ()
    """Groupings of the classes, coarsest first: each a tuple of (group name, member classes)."""

    def __post_init__(self) -> None:
        if not self.classes or self.classes[0] != BACKGROUND:
            raise DataError(f"class map '{self.name}': class 0 must be '{BACKGROUND}'")
        if len(set(self.classes)) != len(self.classes):
            raise DataError(f"class map '{self.name}': class names repeat")
        if len(self.classes) > 255:
            raise DataError(f"class map '{self.name}': at most 255 classes fit in uint8 masks")
        if len(self.palette) != len(self.classes) or len(set(self.palette)) != len(self.palette):
            raise DataError(f"class map '{self.name}': needs one distinct colour per class")
        for src, dst in self.source_to_class.items():
            if dst not in self.classes:
                raise DataError(f"class map '{self.name}': label '{src}' maps to unknown class '{dst}'")
        previous = None
        for depth, level in enumerate(self.coarse_levels):
            members = [m for _, ms in level for m in ms]
            unknown = sorted(set(members) - set(self.classes))
            if unknown:
                raise DataError(f"class map '{self.name}': coarse level {depth} names unknown classes {unknown}")
            if sorted(members) != sorted(self.classes):
                raise DataError(
                    f"class map '{self.name}': coarse level {depth} must place every class in exactly one group"
                )
            if level[0] != (BACKGROUND, (BACKGROUND,)):
                raise DataError(f"class map '{self.name}': coarse level {depth} must start with background alone")
            if previous is not None:
                for group, ms in level:
                    parents = {previous.fine_to_group[self.classes.index(m)] for m in ms}
                    if len(parents) != 1:
                        raise DataError(
                            f"class map '{self.name}': group '{group}' of level {depth} spans several "
                            f"groups of level {depth - 1}; each level must refine the one before"
                        )
            previous = self._level(depth)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def _level(self, depth: int) -> Level:
        groups = self.coarse_levels[depth]
        names = tuple(g for g, _ in groups)
        fine_to_group = [0] * len(self.classes)
        for gi, (_, members) in enumerate(groups):
            for m in members:
                fine_to_group[self.classes.index(m)] = gi
        palette = []
        for _, members in groups:
            # A group shows in the colour of its first member, so a class keeps its colour when split off.
            color = self.palette[self.classes.index(members[0])]
            while color in palette:  # keep level colours distinct
                color = tuple((c + 97) % 256 for c in color)
            palette.append(color)
        return Level(names, tuple(palette), tuple(fine_to_group))

    def levels(self) -> list[Level]:
        """All levels, coarsest first; the last is the fine classes themselves."""
        fine = Level(self.classes, self.palette, tuple(range(len(self.classes))))
        return [self._level(d) for d in range(len(self.coarse_levels))] + [fine]

    def source_lut(self, source_labels: list[str] | tuple[str, ...], where: str) -> np.ndarray:
        """A lookup table source label id -> class id (uint8). `where` names the label source in errors."""
        mapping = self.source_to_class or {c: c for c in self.classes}
        lut = np.zeros(len(source_labels), dtype=np.uint8)
        unmapped = []
        for i, label in enumerate(source_labels):
            if label in mapping:
                lut[i] = self.classes.index(mapping[label])
            else:
                unmapped.append(label)
        if unmapped:
            raise DataError(f"{where}: labels {unmapped} are not in class map '{self.name}'")
        unknown = sorted(set(mapping) - set(source_labels))
        if unknown and self.source_to_class:
            raise DataError(f"class map '{self.name}': names labels {unknown} that {where} does not have")
        return lut

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "classes": [
                {"id": i, "name": n, "color": list(c)} for i, (n, c) in enumerate(zip(self.classes, self.palette))
            ],
            "coarse_levels": [[{"name": g, "members": list(ms)} for g, ms in level] for level in self.coarse_levels],
        }

    @classmethod
    def from_json(cls, data: dict, source_to_class: dict[str, str] | None = None) -> ClassMap:
        classes = sorted(data["classes"], key=lambda c: c["id"])
        if [c["id"] for c in classes] != list(range(len(classes))):
            raise DataError(f"class map '{data.get('name')}': class ids must be 0..K-1 without gaps")
        return cls(
            name=data.get("name", "custom"),
            classes=tuple(c["name"] for c in classes),
            palette=tuple(tuple(int(v) for v in c["color"]) for c in classes),
            source_to_class=dict(source_to_class or {}),
            coarse_levels=tuple(
                tuple((g["name"], tuple(g["members"])) for g in level) for level in data.get("coarse_levels", [])
            ),
        )


def _ccp12() -> ClassMap:
    source_to_class = {label: group for group, labels in _CCP12_GROUPS.items() for label in labels.split()}
    names = tuple(_CCP12_GROUPS)
    person = ((BACKGROUND, (BACKGROUND,)), ("person", names[1:]))
    middle = tuple((g, tuple(ms)) for g, ms in _CCP12_MIDDLE.items())
    return ClassMap("ccp-12", names, tuple(_CCP12_PALETTE[n] for n in names), source_to_class, (person, middle))


def _ccp_full() -> ClassMap:
    names = (BACKGROUND,) + tuple(CCP_LABELS[1:])
    source_to_class = {"null": BACKGROUND, **{label: label for label in CCP_LABELS[1:]}}
    ccp12 = _ccp12()
    person = ((BACKGROUND, (BACKGROUND,)), ("person", names[1:]))
    groups = tuple((g, tuple(source_to_class[label] for label in _CCP12_GROUPS[g].split())) for g in ccp12.classes)
    return ClassMap("ccp-full", names, tuple(voc_palette(len(names))), source_to_class, (person, groups))


def _person() -> ClassMap:
    source_to_class = {label: ("person" if label != "null" else BACKGROUND) for label in CCP_LABELS}
    return ClassMap("person", (BACKGROUND, "person"), ((0, 0, 0), (230, 25, 75)), source_to_class)


BUILTIN_CLASS_MAPS = {"ccp-12": _ccp12, "ccp-full": _ccp_full, "person": _person}


def load_user_class_map(path: Path) -> ClassMap:
    """A class map from YAML/JSON: {name, mapping: {source: class}, classes?, palette?, coarse_levels?}.

    `classes` fixes the order (background first); otherwise classes appear in mapping order.
    `coarse_levels` is a list of levels, each a mapping group name -> member classes.
    """
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise DataError(f"{path}: cannot read class map: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("mapping"), dict):
        raise DataError(f"{path}: a class map needs a 'mapping' of source label -> class name")
    # YAML reads an unquoted `null:` key (CCP's background label) as None.
    mapping = {("null" if k is None else str(k)): str(v) for k, v in data["mapping"].items()}
    classes = [str(c) for c in data.get("classes", [])]
    if classes:
        unknown = sorted(set(mapping.values()) - set(classes))
        if unknown:
            raise DataError(f"{path}: mapping uses unknown class names {unknown}; classes are {classes}")
    else:
        classes = [BACKGROUND]
        classes += [c for c in dict.fromkeys(mapping.values()) if c != BACKGROUND]
    colors = voc_palette(len(classes))
    for cname, color in (data.get("palette") or {}).items():
        if cname not in classes:
            raise DataError(f"{path}: palette names unknown class '{cname}'")
        colors[classes.index(cname)] = tuple(int(v) for v in color)
    levels = []
    for depth, level in enumerate(data.get("coarse_levels") or []):
        if not isinstance(level, dict):
            raise DataError(f"{path}: coarse level {depth} must map group names to member classes")
        levels.append(tuple((str(g), tuple(str(m) for m in ms)) for g, ms in level.items()))
    return ClassMap(str(data.get("name", path.stem)), tuple(classes), tuple(colors), mapping, tuple(levels))


def get_class_map(name_or_path: str) -> ClassMap:
    """A built-in class map by name, or a user map from a YAML/JSON file."""
    if name_or_path in BUILTIN_CLASS_MAPS:
        return BUILTIN_CLASS_MAPS[name_or_path]()
    path = Path(name_or_path)
    if path.suffix.lower() in {".yaml", ".yml", ".json"}:
        if not path.is_file():
            raise DataError(f"{path}: class map file not found")
        return load_user_class_map(path)
    raise DataError(f"unknown class map '{name_or_path}': use one of {sorted(BUILTIN_CLASS_MAPS)} or a YAML/JSON file")


def write_classes_json(class_map: ClassMap, path: Path) -> None:
    path.write_text(json.dumps(class_map.to_json(), indent=2) + "\n")
