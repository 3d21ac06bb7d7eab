"""Class maps: which source labels become which training classes, their colours, the
coarse-to-fine hierarchy that class growth walks through, and which classes swap under a mirror.

A class map turns source label names (CCP's 59 labels, LIP's 20, or the names in a paired dataset's
classes.json) into class ids 0..K-1, with 0 always background. `coarse_levels` lists groupings
of those classes from coarsest to finest; training can start segmentation at the coarsest level
and split groups into their members later. `mirror_pairs` names left/right classes (the person's
own sides): every horizontal flip of a mask swaps them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from styleseg.errors import DataError
from styleseg.jsonio import write_json

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
    mirror: tuple[int, ...] = ()  # group id -> the group it becomes in a mirror image (empty: identity)

    def mirror_lut(self) -> np.ndarray:
        """(K,) group id -> group id under a horizontal flip."""
        return np.asarray(self.mirror or range(self.num_classes), dtype=np.int64)

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
    mirror_pairs: tuple[tuple[str, str], ...] = ()
    """(left, right) classes that a horizontal flip swaps, e.g. ("left-arm", "right-arm")."""

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
        paired = [c for pair in self.mirror_pairs for c in pair]
        if any(len(pair) != 2 for pair in self.mirror_pairs) or len(set(paired)) != len(paired):
            raise DataError(f"class map '{self.name}': mirror pairs must be disjoint (left, right) pairs")
        unknown = sorted(set(paired) - set(self.classes))
        if unknown:
            raise DataError(f"class map '{self.name}': mirror pairs name unknown classes {unknown}")
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

    def mirror_lut(self) -> np.ndarray:
        """(K,) class id -> class id under a horizontal flip (left and right swapped)."""
        lut = np.arange(len(self.classes), dtype=np.int64)
        for left, right in self.mirror_pairs:
            i, j = self.classes.index(left), self.classes.index(right)
            lut[i], lut[j] = j, i
        return lut

    def _level_mirror(self, fine_to_group: list[int], names: tuple[str, ...]) -> tuple[int, ...]:
        """Group -> mirrored group; a level whose groups split a pair unevenly cannot be mirrored."""
        fine_mirror = self.mirror_lut()
        mirror = [-1] * len(names)
        for f, g in enumerate(fine_to_group):
            target = fine_to_group[fine_mirror[f]]
            if mirror[g] not in (-1, target):
                raise DataError(
                    f"class map '{self.name}': group '{names[g]}' holds only one side of a left/right pair; "
                    "put both sides in one group or each in its own"
                )
            mirror[g] = target
        return tuple(mirror)

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
        return Level(names, tuple(palette), tuple(fine_to_group), self._level_mirror(fine_to_group, names))

    def levels(self) -> list[Level]:
        """All levels, coarsest first; the last is the fine classes themselves."""
        fine = Level(self.classes, self.palette, tuple(range(len(self.classes))), tuple(self.mirror_lut().tolist()))
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
            "mirror_pairs": [list(pair) for pair in self.mirror_pairs],
        }

    @classmethod
    def from_names(cls, names: list[str] | tuple[str, ...], name: str = "custom") -> ClassMap:
        """A class map from names alone: id = position, colours from the fixed VOC palette."""
        names = tuple(str(n) for n in names)
        if names and names[0] in {"null", "Background", "_background_"}:  # common spellings of class 0
            names = (BACKGROUND,) + names[1:]
        return cls(name, names, tuple(voc_palette(len(names))))

    @classmethod
    def from_json(cls, data, source_to_class: dict[str, str] | None = None) -> ClassMap:
        """A class map from a classes.json: a list of names, {"classes": [names]}, or the full form
        {"name", "classes": [{"id", "name", "color"}], "coarse_levels"?, "mirror_pairs"?}."""
        if isinstance(data, list):
            data = {"classes": data}
        if not isinstance(data, dict) or not isinstance(data.get("classes"), list):
            raise DataError('expected a list of class names, {"classes": [...]} or styleseg\'s class table')
        entries = data["classes"]
        if all(isinstance(c, str) for c in entries):
            plain = cls.from_names(entries, data.get("name", "custom"))
            classes, palette = plain.classes, plain.palette
        else:
            entries = sorted(entries, key=lambda c: c["id"])
            if [c["id"] for c in entries] != list(range(len(entries))):
                raise DataError(f"class map '{data.get('name')}': class ids must be 0..K-1 without gaps")
            classes = tuple(c["name"] for c in entries)
            fallback = voc_palette(len(entries))
            palette = tuple(tuple(int(v) for v in c.get("color", fallback[i])) for i, c in enumerate(entries))
        return cls(
            name=data.get("name", "custom"),
            classes=classes,
            palette=palette,
            source_to_class=dict(source_to_class or {}),
            coarse_levels=tuple(
                tuple((g["name"], tuple(g["members"])) for g in level) for level in data.get("coarse_levels", [])
            ),
            mirror_pairs=tuple(tuple(p) for p in data.get("mirror_pairs", [])),
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


# LIP's 20 labels (also CIHP's and VITON's parsing maps), in id order; left/right are the person's own sides.
LIP_LABELS = (
    "background hat hair glove sunglasses upper-clothes dress coat socks pants jumpsuits scarf skirt face "
    "left-arm right-arm left-leg right-leg left-shoe right-shoe"
).split()
LIP_MIRROR_PAIRS = (("left-arm", "right-arm"), ("left-leg", "right-leg"), ("left-shoe", "right-shoe"))
# ATR's 18 labels (the "humanparsing" release), in id order.
ATR_LABELS = (
    "background hat hair sunglasses upper-clothes skirt pants dress belt left-shoe right-shoe face "
    "left-leg right-leg left-arm right-arm bag scarf"
).split()

# The merged default for LIP-labelled data: a dozen classes, left and right merged (few users need
# them apart, and a flip then needs no swap), rare items pooled as accessories.
_LIP12_GROUPS: dict[str, str] = {
    "background": "background",
    "hair": "hair",
    "face": "face",
    "arms": "left-arm right-arm",
    "legs": "left-leg right-leg",
    "upper-clothes": "upper-clothes",
    "coat": "coat",
    "dress": "dress jumpsuits",
    "pants": "pants",
    "skirt": "skirt",
    "footwear": "socks left-shoe right-shoe",
    "accessories": "hat glove sunglasses scarf",
}
_LIP12_PALETTE = {
    "background": (0, 0, 0),
    "hair": (128, 64, 0),
    "face": (255, 204, 153),
    "arms": (210, 150, 110),
    "legs": (170, 110, 80),
    "upper-clothes": (230, 25, 75),
    "coat": (0, 130, 200),
    "dress": (240, 50, 230),
    "pants": (70, 240, 240),
    "skirt": (245, 130, 48),
    "footwear": (60, 180, 75),
    "accessories": (255, 225, 25),
}
_LIP12_MIDDLE = {
    "background": ["background"],
    "body": ["hair", "face", "arms", "legs"],
    "upper-wear": ["upper-clothes", "coat", "dress"],
    "lower-wear": ["pants", "skirt", "footwear"],
    "accessories": ["accessories"],
}


def _lip12() -> ClassMap:
    source_to_class = {label: group for group, labels in _LIP12_GROUPS.items() for label in labels.split()}
    names = tuple(_LIP12_GROUPS)
    person = ((BACKGROUND, (BACKGROUND,)), ("person", names[1:]))
    middle = tuple((g, tuple(ms)) for g, ms in _LIP12_MIDDLE.items())
    return ClassMap("lip-12", names, tuple(_LIP12_PALETTE[n] for n in names), source_to_class, (person, middle))


def _lip20() -> ClassMap:
    """All LIP labels; coarse levels person, then the lip-12 groups (each side its own group there
    would split a pair, so arms, legs and shoes stay together until the last split)."""
    names = tuple(LIP_LABELS)
    person = ((BACKGROUND, (BACKGROUND,)), ("person", names[1:]))
    groups = tuple((g, tuple(labels.split())) for g, labels in _LIP12_GROUPS.items())
    return ClassMap(
        "lip-20", names, tuple(voc_palette(len(names))), {n: n for n in names}, (person, groups), LIP_MIRROR_PAIRS
    )


def _atr18() -> ClassMap:
    names = tuple(ATR_LABELS)
    person = ((BACKGROUND, (BACKGROUND,)), ("person", names[1:]))
    pairs = (("left-arm", "right-arm"), ("left-leg", "right-leg"), ("left-shoe", "right-shoe"))
    return ClassMap("atr-18", names, tuple(voc_palette(len(names))), {n: n for n in names}, (person,), pairs)


BUILTIN_CLASS_MAPS = {
    "ccp-12": _ccp12,
    "ccp-full": _ccp_full,
    "person": _person,
    "lip-12": _lip12,
    "lip-20": _lip20,
    "atr-18": _atr18,
}


def load_user_class_map(path: Path) -> ClassMap:
    """A class map from YAML/JSON: {name, mapping: {source: class}, classes?, palette?, coarse_levels?,
    mirror_pairs?}, or just a list of class names (a plain text file: one name a line).

    `classes` fixes the order (background first); otherwise classes appear in mapping order.
    `coarse_levels` is a list of levels, each a mapping group name -> member classes.
    """
    try:
        text = path.read_text()
        data = yaml.safe_load(text) if path.suffix.lower() in {".yaml", ".yml", ".json"} else text.split()
    except (OSError, yaml.YAMLError) as exc:
        raise DataError(f"{path}: cannot read class map: {exc}") from exc
    if isinstance(data, list) or (isinstance(data, dict) and "mapping" not in data and "classes" in data):
        try:
            return ClassMap.from_json(data if isinstance(data, dict) else {"name": path.stem, "classes": data})
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"{path}: not a valid class list ({exc})") from exc
    if not isinstance(data, dict) or not isinstance(data.get("mapping"), dict):
        raise DataError(f"{path}: a class map needs a list of class names or a 'mapping' of source label -> class name")
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
    pairs = tuple(tuple(str(c) for c in pair) for pair in data.get("mirror_pairs") or [])
    return ClassMap(str(data.get("name", path.stem)), tuple(classes), tuple(colors), mapping, tuple(levels), pairs)


def get_class_map(name_or_path: str) -> ClassMap:
    """A built-in class map by name, or a user map from a YAML/JSON file or a text file of names."""
    if name_or_path in BUILTIN_CLASS_MAPS:
        return BUILTIN_CLASS_MAPS[name_or_path]()
    path = Path(name_or_path)
    if path.suffix.lower() in {".yaml", ".yml", ".json", ".txt"}:
        if not path.is_file():
            raise DataError(f"{path}: class map file not found")
        return load_user_class_map(path)
    raise DataError(
        f"unknown class map '{name_or_path}': use one of {sorted(BUILTIN_CLASS_MAPS)} or a YAML/JSON/TXT file"
    )


def write_classes_json(class_map: ClassMap, path: Path) -> None:
    write_json(path, class_map.to_json())
