"""ICD-9-CM / ICD-10-CM / ICD-10-PCS code hierarchy: chapter > category > code.

Both common MIMIC preprocessings (caml-mimic, Mullenbach et al. 2018; and
medical-coding-reproducibility, Edin et al. 2023) write codes with a dot, and the
dot is what tells diagnoses from procedures:

================  ====================  ==========================  ===========================
code system       example codes         category (coarse level)     chapter (coarsest level)
================  ====================  ==========================  ===========================
ICD-9 diagnosis   ``428.0``, ``042``    first 3 characters: ``428`` numeric range, e.g. 390-459
ICD-9 V code      ``V12.54``            first 3 characters: ``V12`` ``V01-V91`` supplementary
ICD-9 E code      ``E812.0``            first 4 characters: ``E812`` ``E000-E999`` external causes
ICD-9 procedure   ``96.04``             ``proc:96`` (2 digits)      range, e.g. 35-39 cardiovascular
ICD-10-CM         ``I50.9``, ``I10.``   first 3 characters: ``I50`` letter range, e.g. I00-I99
ICD-10-PCS        ``0DTJ4ZZ``           ``pcs:0DT`` (first 3)       section (first character)
================  ====================  ==========================  ===========================

Why these choices:

* ICD-9 E codes have a 3-digit category after the ``E`` (E812 = "other motor vehicle
  traffic accident involving collision"), so their category takes 4 characters;
  this is the standard ICD-9-CM convention.
* ICD-9 procedure categories are 2-digit (``96.04`` is in category 96) and ICD-10-PCS
  codes are grouped by the first three characters (section, body system, root
  operation: a PCS "table"). They get a ``proc:``/``pcs:`` prefix so a procedure
  category can never collide with a diagnosis category of the same spelling
  (ICD-10-PCS ``D70`` radiation therapy vs ICD-10-CM ``D70`` neutropenia).
* Codes written without dots are ambiguous (``4280`` diagnosis 428.0 vs ``9604``
  procedure 96.04). Undotted all-digit codes are read as ICD-9 diagnoses unless they
  are listed in ``procedure_codes`` (the Edin et al. feather files keep separate
  ``icd9_proc`` / ``icd10_proc`` columns; :func:`icd_hierarchy` accepts those codes).
  In a label set that writes diagnoses with dots, undotted 7-character codes are
  ICD-10-PCS; otherwise only undotted 7-character codes starting with a digit are.
* ``V`` codes exist in both ICD-9 (``V12``) and ICD-10-CM (``V43``, transport
  accidents); the category is the same string either way, the chapter follows the
  label set's detected version (:func:`detect_icd_version`).
* Anything unrecognised gets the part before the dot (or the first 3 characters)
  as category and the chapter ``"unclassified"``, rather than failing a whole run.

Example:
    >>> icd_category("428.0"), icd_category("E812.0"), icd_category("96.04")
    ('428', 'E812', 'proc:96')
    >>> icd_chapter("428.0")
    'ICD-9 390-459: circulatory system'
    >>> h = icd_hierarchy(["428.0", "401.9", "96.04"])
    >>> h.level_titles, h.coarse_of("428.0")
    (['chapter', 'category', 'code'], '428')
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from .hierarchy import LabelHierarchy

__all__ = [
    "IcdCode",
    "parse_icd",
    "icd_category",
    "icd_chapter",
    "icd_hierarchy",
    "detect_icd_version",
]

# (first, last, title) of the ICD-9-CM diagnosis chapters (numeric 3-digit ranges).
_ICD9_DX_CHAPTERS = [
    (1, 139, "001-139", "infectious and parasitic diseases"),
    (140, 239, "140-239", "neoplasms"),
    (240, 279, "240-279", "endocrine, nutritional and metabolic diseases, immunity disorders"),
    (280, 289, "280-289", "diseases of the blood and blood-forming organs"),
    (290, 319, "290-319", "mental disorders"),
    (320, 389, "320-389", "nervous system and sense organs"),
    (390, 459, "390-459", "circulatory system"),
    (460, 519, "460-519", "respiratory system"),
    (520, 579, "520-579", "digestive system"),
    (580, 629, "580-629", "genitourinary system"),
    (630, 679, "630-679", "pregnancy, childbirth and the puerperium"),
    (680, 709, "680-709", "skin and subcutaneous tissue"),
    (710, 739, "710-739", "musculoskeletal system and connective tissue"),
    (740, 759, "740-759", "congenital anomalies"),
    (760, 779, "760-779", "conditions originating in the perinatal period"),
    (780, 799, "780-799", "symptoms, signs and ill-defined conditions"),
    (800, 999, "800-999", "injury and poisoning"),
]
_ICD9_V_CHAPTER = "ICD-9 V01-V91: supplementary factors influencing health status"
_ICD9_E_CHAPTER = "ICD-9 E000-E999: external causes of injury"

# ICD-9-CM procedure chapters (2-digit ranges).
_ICD9_PX_CHAPTERS = [
    (0, 0, "00", "procedures and interventions, not elsewhere classified"),
    (1, 5, "01-05", "operations on the nervous system"),
    (6, 7, "06-07", "operations on the endocrine system"),
    (8, 16, "08-16", "operations on the eye"),
    (17, 17, "17", "other miscellaneous procedures"),
    (18, 20, "18-20", "operations on the ear"),
    (21, 29, "21-29", "operations on the nose, mouth and pharynx"),
    (30, 34, "30-34", "operations on the respiratory system"),
    (35, 39, "35-39", "operations on the cardiovascular system"),
    (40, 41, "40-41", "operations on the hemic and lymphatic system"),
    (42, 54, "42-54", "operations on the digestive system"),
    (55, 59, "55-59", "operations on the urinary system"),
    (60, 64, "60-64", "operations on the male genital organs"),
    (65, 71, "65-71", "operations on the female genital organs"),
    (72, 75, "72-75", "obstetrical procedures"),
    (76, 84, "76-84", "operations on the musculoskeletal system"),
    (85, 86, "85-86", "operations on the integumentary system"),
    (87, 99, "87-99", "miscellaneous diagnostic and therapeutic procedures"),
]

# ICD-10-CM chapters: (first letter, first number, last letter, last number, range, title).
_ICD10_CHAPTERS = [
    ("A", 0, "B", 99, "A00-B99", "certain infectious and parasitic diseases"),
    ("C", 0, "D", 49, "C00-D49", "neoplasms"),
    ("D", 50, "D", 89, "D50-D89", "blood, blood-forming organs and immune mechanism"),
    ("E", 0, "E", 89, "E00-E89", "endocrine, nutritional and metabolic diseases"),
    ("F", 0, "F", 99, "F01-F99", "mental, behavioral and neurodevelopmental disorders"),
    ("G", 0, "G", 99, "G00-G99", "nervous system"),
    ("H", 0, "H", 59, "H00-H59", "eye and adnexa"),
    ("H", 60, "H", 95, "H60-H95", "ear and mastoid process"),
    ("I", 0, "I", 99, "I00-I99", "circulatory system"),
    ("J", 0, "J", 99, "J00-J99", "respiratory system"),
    ("K", 0, "K", 95, "K00-K95", "digestive system"),
    ("L", 0, "L", 99, "L00-L99", "skin and subcutaneous tissue"),
    ("M", 0, "M", 99, "M00-M99", "musculoskeletal system and connective tissue"),
    ("N", 0, "N", 99, "N00-N99", "genitourinary system"),
    ("O", 0, "O", 99, "O00-O9A", "pregnancy, childbirth and the puerperium"),
    ("P", 0, "P", 99, "P00-P96", "conditions originating in the perinatal period"),
    ("Q", 0, "Q", 99, "Q00-Q99", "congenital malformations and chromosomal abnormalities"),
    ("R", 0, "R", 99, "R00-R99", "symptoms, signs and abnormal findings"),
    ("S", 0, "T", 99, "S00-T88", "injury, poisoning and other consequences of external causes"),
    ("U", 0, "U", 99, "U00-U85", "codes for special purposes"),
    ("V", 0, "Y", 99, "V00-Y99", "external causes of morbidity"),
    ("Z", 0, "Z", 99, "Z00-Z99", "factors influencing health status and contact with health services"),
]

_PCS_SECTIONS = {
    "0": "medical and surgical",
    "1": "obstetrics",
    "2": "placement",
    "3": "administration",
    "4": "measurement and monitoring",
    "5": "extracorporeal or systemic assistance and performance",
    "6": "extracorporeal or systemic therapies",
    "7": "osteopathic",
    "8": "other procedures",
    "9": "chiropractic",
    "B": "imaging",
    "C": "nuclear medicine",
    "D": "radiation therapy",
    "F": "physical rehabilitation and diagnostic audiology",
    "G": "mental health",
    "H": "substance abuse treatment",
    "X": "new technology",
}

UNCLASSIFIED = "unclassified"

_RE_2DIG = re.compile(r"^\d{2}$")
_RE_3DIG = re.compile(r"^\d{3}$")
_RE_E9 = re.compile(r"^E\d{3}$")
_RE_V = re.compile(r"^V\d{2}$")
_RE_CM_HEAD = re.compile(r"^[A-Z]\d[0-9A-Z]$")
_RE_PCS = re.compile(r"^[0-9A-HJ-NP-Z]{7}$")
_RE_DIGITS = re.compile(r"^\d+$")


@dataclass(frozen=True)
class IcdCode:
    """A parsed code.

    Attributes:
        code: The code as given.
        system: ``"icd9-dx"``, ``"icd9-px"``, ``"icd10-cm"``, ``"icd10-pcs"`` or ``"unknown"``.
        category: Coarse group (see the module table).
        chapter: Coarsest group, e.g. ``"ICD-10 I00-I99: circulatory system"``.
    """

    code: str
    system: str
    category: str
    chapter: str


def _norm(code: str) -> str:
    return str(code).strip().upper()


def _is_dotted(code: str) -> bool:
    return "." in code


def detect_icd_version(codes: Iterable[str]) -> int:
    """Guess whether a label set is ICD-9 or ICD-10 from the unambiguous codes.

    Codes whose head (before the dot) is 2–3 digits or ``E`` + 3 digits vote ICD-9;
    a head of letter + digit + alphanumeric (other than a ``V`` code) or an undotted
    7-character code votes ICD-10. Ties and label sets with no evidence give 9.

    Example:
        >>> detect_icd_version(["I50.9", "0DTJ4ZZ", "V43.52XA"]), detect_icd_version(["428.0"])
        (10, 9)
    """
    v9 = v10 = 0
    for c in codes:
        c = _norm(c)
        if not c:
            continue
        if _is_dotted(c):
            head = c.split(".", 1)[0]
            if _RE_2DIG.match(head) or _RE_3DIG.match(head) or _RE_E9.match(head):
                v9 += 1
            elif _RE_CM_HEAD.match(head) and not head.startswith("V"):
                v10 += 1
        elif _RE_DIGITS.match(c) and len(c) <= 5:
            v9 += 1
        elif len(c) == 7:
            v10 += 1
        elif _RE_CM_HEAD.match(c[:3]) and c[0] not in "VE":
            v10 += 1
    return 10 if v10 > v9 else 9


def _icd9_dx_chapter(head: str) -> str:
    if head.startswith("V"):
        return _ICD9_V_CHAPTER
    if head.startswith("E"):
        return _ICD9_E_CHAPTER
    try:
        n = int(head[:3])
    except ValueError:
        return UNCLASSIFIED
    for lo, hi, rng, title in _ICD9_DX_CHAPTERS:
        if lo <= n <= hi:
            return f"ICD-9 {rng}: {title}"
    return UNCLASSIFIED


def _icd9_px_chapter(head: str) -> str:
    try:
        n = int(head[:2])
    except ValueError:
        return UNCLASSIFIED
    for lo, hi, rng, title in _ICD9_PX_CHAPTERS:
        if lo <= n <= hi:
            return f"ICD-9 procedures {rng}: {title}"
    return UNCLASSIFIED


def _icd10_chapter(head: str) -> str:
    letter = head[0]
    digits = head[1:3]
    # Third character may be a letter (O9A, C4A, M1A): the block is given by the digit before it.
    tens = int(digits[0]) if digits[:1].isdigit() else 0
    ones = int(digits[1]) if len(digits) > 1 and digits[1].isdigit() else 0
    n = tens * 10 + ones
    for l0, n0, l1, n1, rng, title in _ICD10_CHAPTERS:
        if (letter, n) >= (l0, n0) and (letter, n) <= (l1, n1):
            return f"ICD-10 {rng}: {title}"
    return UNCLASSIFIED


def _pcs_chapter(code: str) -> str:
    title = _PCS_SECTIONS.get(code[0])
    return f"ICD-10-PCS {code[0]}: {title}" if title else UNCLASSIFIED


def parse_icd(
    code: str,
    *,
    version: int = 9,
    procedure: bool | None = None,
    dotted_style: bool = True,
) -> IcdCode:
    """Classify one code and find its category and chapter.

    Args:
        code: An ICD code, dotted as in caml-mimic / Edin et al. (``428.0``, ``96.04``,
            ``I50.9``, ``0DTJ4ZZ``), or undotted.
        version: 9 or 10, used only where the code itself is ambiguous (``V`` codes,
            undotted ``E`` codes).
        procedure: True if known to be a procedure code, False if known to be a
            diagnosis, None to infer from the format.
        dotted_style: Whether the label set writes diagnoses with dots; then an
            undotted 7-character code is ICD-10-PCS.

    Returns:
        The :class:`IcdCode`.

    Example:
        >>> parse_icd("0DTJ4ZZ", version=10).category
        'pcs:0DT'
    """
    if version not in (9, 10):
        raise ValueError(f"version must be 9 or 10, got {version!r}")
    c = _norm(code)
    head = c.split(".", 1)[0] if _is_dotted(c) else c

    if procedure is True:
        if _is_dotted(c) or (_RE_DIGITS.match(c) and len(c) <= 4):
            h = head[:2]
            return IcdCode(code, "icd9-px", f"proc:{h}", _icd9_px_chapter(h))
        if len(c) == 7:
            return IcdCode(code, "icd10-pcs", f"pcs:{c[:3]}", _pcs_chapter(c))
        # Fall through to format-based parsing for odd procedure spellings.

    if _is_dotted(c) and procedure is not True:
        if _RE_2DIG.match(head):
            if procedure is False:
                return IcdCode(code, "unknown", head, UNCLASSIFIED)
            return IcdCode(code, "icd9-px", f"proc:{head}", _icd9_px_chapter(head))
        if _RE_3DIG.match(head):
            return IcdCode(code, "icd9-dx", head, _icd9_dx_chapter(head))
        if _RE_E9.match(head):
            return IcdCode(code, "icd9-dx", head, _ICD9_E_CHAPTER)
        if _RE_V.match(head) and version == 9:
            return IcdCode(code, "icd9-dx", head, _ICD9_V_CHAPTER)
        if _RE_CM_HEAD.match(head):
            return IcdCode(code, "icd10-cm", head, _icd10_chapter(head))
        return IcdCode(code, "unknown", head or c, UNCLASSIFIED)

    # Undotted codes.
    if _RE_DIGITS.match(c):
        if len(c) == 2 and procedure is not False:
            return IcdCode(code, "icd9-px", f"proc:{c}", _icd9_px_chapter(c))
        if 3 <= len(c) <= 5:
            return IcdCode(code, "icd9-dx", c[:3], _icd9_dx_chapter(c[:3]))
        if len(c) == 7 and procedure is not False:
            return IcdCode(code, "icd10-pcs", f"pcs:{c[:3]}", _pcs_chapter(c))
        return IcdCode(code, "unknown", c[:3], UNCLASSIFIED)
    if len(c) == 7 and _RE_PCS.match(c) and procedure is not False and (dotted_style or c[0].isdigit()):
        return IcdCode(code, "icd10-pcs", f"pcs:{c[:3]}", _pcs_chapter(c))
    if version == 9 and re.match(r"^V\d{2,4}$", c):
        return IcdCode(code, "icd9-dx", c[:3], _ICD9_V_CHAPTER)
    if version == 9 and re.match(r"^E\d{3,4}$", c):
        return IcdCode(code, "icd9-dx", c[:4], _ICD9_E_CHAPTER)
    if _RE_CM_HEAD.match(c[:3]) and len(c) >= 3:
        return IcdCode(code, "icd10-cm", c[:3], _icd10_chapter(c[:3]))
    return IcdCode(code, "unknown", c[:3] or c, UNCLASSIFIED)


def icd_category(code: str, *, version: int | None = None, procedure: bool | None = None) -> str:
    """Category (coarse group) of one ICD code; see the module table.

    Args:
        code: The code.
        version: 9 or 10 for ambiguous codes; None guesses from the code alone.
        procedure: Known procedure/diagnosis status, or None to infer.

    Example:
        >>> icd_category("428.0"), icd_category("V12.54"), icd_category("I50.9")
        ('428', 'V12', 'I50')
    """
    v = version if version is not None else detect_icd_version([code])
    return parse_icd(code, version=v, procedure=procedure).category


def icd_chapter(code: str, *, version: int | None = None, procedure: bool | None = None) -> str:
    """Chapter (coarsest group) of one ICD code.

    ICD-9 diagnoses by numeric range (plus the V and E supplementary chapters),
    ICD-9 procedures by 2-digit range, ICD-10-CM by letter range, ICD-10-PCS by section.

    Example:
        >>> icd_chapter("I50.9")
        'ICD-10 I00-I99: circulatory system'
    """
    v = version if version is not None else detect_icd_version([code])
    return parse_icd(code, version=v, procedure=procedure).chapter


def icd_hierarchy(
    codes: Sequence[str],
    *,
    version: int | str = "auto",
    procedure_codes: Iterable[str] = (),
    chapters: bool = True,
) -> LabelHierarchy:
    """Hierarchy over a list of ICD codes: ``[chapter, category, code]`` levels.

    Args:
        codes: The fine labels (the dataset's ``label_names``).
        version: 9, 10, or ``"auto"`` (:func:`detect_icd_version` on ``codes``).
        procedure_codes: Codes known to be procedures (e.g. the ``icd9_proc`` column of
            Edin et al.'s files); needed only for undotted procedure codes.
        chapters: Include the chapter level (3 levels) or not (category > code only).

    Returns:
        A :class:`LabelHierarchy` with titles ``["chapter", "category", "code"]``
        (or ``["category", "code"]``).

    Example:
        >>> h = icd_hierarchy(["428.0", "428.1", "96.04"], chapters=False)
        >>> h.coarse_names, h.parent.tolist()
        (['428', 'proc:96'], [0, 0, 1])
    """
    codes = [str(c) for c in codes]
    if version == "auto":
        v = detect_icd_version(codes)
    elif version in (9, 10, "9", "10"):
        v = int(version)
    else:
        raise ValueError(f"icd_version must be 'auto', 9 or 10, got {version!r}")
    procs = {_norm(c) for c in procedure_codes}
    dotted = any(_is_dotted(_norm(c)) for c in codes)
    parsed = [
        parse_icd(c, version=v, procedure=True if _norm(c) in procs else None, dotted_style=dotted)
        for c in codes
    ]
    if chapters:
        # A category must have one chapter; with unusual inputs two codes of one
        # category could disagree, so the first code's chapter wins.
        chapter_of: dict[str, str] = {}
        for p in parsed:
            chapter_of.setdefault(p.category, p.chapter)
        paths = [(chapter_of[p.category], p.category) for p in parsed]
        titles = ["chapter", "category", "code"]
    else:
        paths = [(p.category,) for p in parsed]
        titles = ["category", "code"]
    return LabelHierarchy.from_paths(codes, paths, level_titles=titles)
