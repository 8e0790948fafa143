"""Speech family, synthetic part: TTS voices that data_rules.md allows for training.

Engines: espeak-ng (many languages, +m/+f variants), flite (kal16, awb, rms — never slt), festival
(kal, ked, Finnish lj/mv, Italian lp/pc, Czech dita/machac — never slt/ona).  Texts: Debian ``fortunes``
(en, de, es, it, ru, pl, cs) and sentences generated from Debian word lists (fr, pt, nl, sv, da, nb, bg, uk,
ca, fi).  One group = one voice x language; whole groups go to dev.
"""
from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
import tempfile
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .common import ClipMeta, PartWriter, cut_pieces, load_audio, manifest_row, short_hash, split_of, \
    trim_silence, write_clip

RESERVED_VOICES = {"slt", "cmu_us_slt_arctic_hts", "upc_ca_ona_hts", "ona", "joe", "jf_gongitsune", "jf_tebukuro"}


@dataclass(frozen=True)
class Voice:
    engine: str          # espeak-ng | flite | festival
    name: str            # engine's voice id
    language: str        # ISO code of the text language
    gender: str | None
    package: str
    licence: str
    encoding: str = "utf-8"

    @property
    def group(self) -> str:
        return f"tts:{self.engine}:{self.name}:{self.language}"


#: the TTS programs the speech family synthesises with (each found on PATH)
ENGINES = ("espeak-ng", "flite", "festival")
FLITE = [Voice("flite", v, "en", "male", "flite", "BSD-style (CMU flite licence)") for v in ("kal16", "awb", "rms")]
FESTIVAL = [
    Voice("festival", "kal_diphone", "en", "male", "festvox-kallpc16k", "BSD-style (festvox licence)"),
    Voice("festival", "ked_diphone", "en", "male", "festvox-kdlpc16k", "BSD-style (festvox licence)"),
    Voice("festival", "suo_fi_lj_diphone", "fi", "female", "festvox-suopuhe-lj", "LGPL-2.1+ (suopuhe)", "latin-1"),
    Voice("festival", "hy_fi_mv_diphone", "fi", "male", "festvox-suopuhe-mv", "LGPL-2.1+ (suopuhe)", "latin-1"),
    Voice("festival", "lp_diphone", "it", "female", "festvox-italp16k", "BSD-style (festvox-it licence)", "latin-1"),
    Voice("festival", "pc_diphone", "it", "male", "festvox-itapc16k", "BSD-style (festvox-it licence)", "latin-1"),
    Voice("festival", "czech_dita", "cs", "female", "festvox-czech-dita", "BSD-style (festival-czech licence)", "iso8859-2"),
    Voice("festival", "czech_machac", "cs", "male", "festvox-czech-machac", "BSD-style (festival-czech licence)", "iso8859-2"),
]
# espeak-ng language voice -> text language
ESPEAK_LANGS = {"en-us": "en", "en": "en", "en-gb-scotland": "en", "de": "de", "es": "es", "it": "it", "ru": "ru",
                "pl": "pl", "cs": "cs", "fr": "fr", "pt": "pt", "nl": "nl", "sv": "sv", "da": "da", "nb": "nb",
                "bg": "bg", "uk": "uk", "ca": "ca", "fi": "fi"}
ESPEAK_VARIANTS = [("m1", "male"), ("m2", "male"), ("m3", "male"), ("m4", "male"), ("m5", "male"), ("m6", "male"),
                   ("m7", "male"), ("f1", "female"), ("f2", "female"), ("f3", "female"), ("f4", "female")]


def espeak_voices() -> list[Voice]:
    out = []
    for li, (lang, tl) in enumerate(ESPEAK_LANGS.items()):
        # 5 variants per language, rotating so every variant is used with several languages
        for k in range(5):
            var, g = ESPEAK_VARIANTS[(li * 3 + k * 2) % len(ESPEAK_VARIANTS)]
            out.append(Voice("espeak-ng", f"{lang}+{var}", tl, g, "espeak-ng-data", "GPL-3+"))
    return out


def all_voices() -> list[Voice]:
    vs = []
    if shutil.which("flite"):
        vs += FLITE
    if shutil.which("festival"):
        for v in FESTIVAL:
            if glob.glob(f"/usr/share/festival/voices/*/{v.name}"):
                vs.append(v)
    if shutil.which("espeak-ng"):
        vs += espeak_voices()
    for v in vs:
        assert v.name.split("+")[0] not in RESERVED_VOICES
    return vs


# ----------------------------------------------------------------------------- texts
FORTUNE_LANG_DIRS = {"en": ["fortunes/usr/share/games/fortunes", "fortunes-min/usr/share/games/fortunes"],
                     "de": ["fortunes-de/usr/share/games/fortunes-de", "fortunes-de/usr/share/games/fortunes/de"], "es": ["fortunes-es/usr/share/games/fortunes/es"],
                     "it": ["fortunes-it/usr/share/games/fortunes/it"], "ru": ["fortunes-ru/usr/share/games/fortunes/ru"],
                     "pl": ["fortunes-pl/usr/share/games/fortunes/pl"], "cs": ["fortunes-cs/usr/share/games/fortunes/cs"]}
WORDLISTS = {"fr": "wfrench/usr/share/dict/french", "pt": "wportuguese/usr/share/dict/portuguese",
             "nl": "wdutch/usr/share/dict/dutch", "sv": "wswedish/usr/share/dict/swedish",
             "da": "wdanish/usr/share/dict/danish", "nb": "wnorwegian/usr/share/dict/bokmaal",
             "bg": "wbulgarian/usr/share/dict/bulgarian", "uk": "wukrainian/usr/share/dict/ukrainian",
             "ca": "wcatalan/usr/share/dict/catalan", "it": "witalian/usr/share/dict/italian",
             "es": "wspanish/usr/share/dict/spanish", "de": "wngerman/usr/share/dict/ngerman",
             "pl": "wpolish/usr/share/dict/polish"}
TEXT_PACKAGES = {"fortunes": "fortunes", "wordlist": "w*"}
OFFENSIVE = re.compile(r"\b(sex|fuck|shit|kill|drug|nigg|rape|whore|bitch|penis|gay|jew|god)\w*", re.I)


def _sentences_from_fortunes(root: Path, dirs: list[str]) -> list[str]:
    out = []
    for d in dirs:
        for f in sorted(glob.glob(str(root / d / "**" / "*"), recursive=True)):
            if os.path.isdir(f) or f.endswith((".dat", ".u8")) or "/off/" in f:
                continue
            raw = Path(f).read_bytes()
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                text = raw.decode("latin-1")
            for fort in text.split("\n%\n"):
                body = re.split(r"\n\s*--", fort)[0]
                body = re.sub(r"\s+", " ", body).strip()
                for s in re.split(r"(?<=[.!?])\s+", body):
                    w = s.split()
                    if 5 <= len(w) <= 22 and not OFFENSIVE.search(s) and not re.search(r"[<>{}|\\/_=*#@~^`\[\]$]", s) \
                            and sum(c.isupper() for c in s) < 0.3 * len(s) and not re.search(r"\d{3,}", s) \
                            and not s.startswith(("-", "\"", "'", "(")):
                        out.append(s)
    return sorted(set(out))


def _words(root: Path, rel: str) -> list[str]:
    p = root / rel
    if not rel or not p.is_file():
        return []
    raw = p.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    ws = [w.strip() for w in text.splitlines()]
    return sorted({w for w in ws if w.isalpha() and w.islower() and 2 <= len(w) <= 12 and not OFFENSIVE.search(w)})


def _finnish_words(root: Path) -> list[str]:
    p = root / "dict-freedict-fin-eng/usr/share/dictd/freedict-fin-eng.index"
    if not p.exists():
        return []
    ws = []
    for line in p.read_text("utf-8", errors="replace").splitlines():
        w = line.split("\t")[0]
        if w.isalpha() and w.islower() and 2 <= len(w) <= 12:
            ws.append(w)
    return sorted(set(ws))


class TextBank:
    def __init__(self, scratch_x: Path):
        self.root = Path(scratch_x)
        self.sent: dict[str, list[str]] = {}
        self.words: dict[str, list[str]] = {}

    def sentence(self, lang: str, rng) -> tuple[str, str]:
        """(text, provenance)"""
        if lang not in self.sent:
            self.sent[lang] = _sentences_from_fortunes(self.root, FORTUNE_LANG_DIRS.get(lang, []))
        if lang not in self.words:
            self.words[lang] = _finnish_words(self.root) if lang == "fi" else _words(self.root, WORDLISTS.get(lang, ""))
        sents, words = self.sent[lang], self.words[lang]
        if sents and (not words or rng.random() < 0.8):
            # one or two consecutive-ish sentences for 2-8 s
            s = sents[int(rng.integers(len(sents)))]
            if len(s.split()) < 9 and rng.random() < 0.4:
                s = s + " " + sents[int(rng.integers(len(sents)))]
            return s, f"fortunes ({lang})"
        if words:
            n = int(rng.integers(5, 14))
            ws = [words[int(rng.integers(len(words)))] for _ in range(n)]
            # a comma now and then for prosody
            if n > 7:
                ws[int(rng.integers(3, n - 2))] += ","
            s = " ".join(ws)
            return s[0].upper() + s[1:] + rng.choice([".", ".", ".", "?", "!"]), f"word list ({lang})"
        raise LookupError(f"no text for language {lang}")


# ----------------------------------------------------------------------------- synthesis
def _espeak(v: Voice, text: str, wav: str, rng) -> None:
    speed = int(rng.integers(135, 190))
    pitch = int(rng.integers(30, 75))
    subprocess.run(["espeak-ng", "-v", v.name, "-s", str(speed), "-p", str(pitch), "-w", wav, text],
                   check=True, capture_output=True, timeout=60)


def _flite(v: Voice, text: str, wav: str, rng) -> None:
    stretch = float(rng.uniform(0.85, 1.2))
    f0 = {"kal16": 100, "awb": 105, "rms": 100}.get(v.name, 100) * float(rng.uniform(0.85, 1.2))
    subprocess.run(["flite", "-voice", v.name, "--setf", f"duration_stretch={stretch:.2f}",
                    "--setf", f"int_f0_target_mean={f0:.0f}", "-t", text, "-o", wav],
                   check=True, capture_output=True, timeout=60)


def _festival_batch(v: Voice, items: list[tuple[str, str, float]]) -> None:
    """items: (text, wav path, duration stretch).  One festival process per batch."""
    def q(s: str) -> str:
        return s.replace("\\", " ").replace('"', "'")
    lines = [f"(voice_{v.name})"]
    for text, wav, stretch in items:
        lines.append(f"(Parameter.set 'Duration_Stretch {stretch:.2f})")
        lines.append(f'(set! u (Utterance Text "{q(text)}"))')
        lines.append("(utt.synth u)")
        lines.append(f'(utt.save.wave u "{wav}" \'riff)')
    with tempfile.NamedTemporaryFile("wb", suffix=".scm", delete=False) as f:
        f.write(("\n".join(lines) + "\n").encode(v.encoding, errors="replace"))
        scm = f.name
    try:
        subprocess.run(["festival", "--batch", scm], capture_output=True, timeout=600)
    finally:
        os.unlink(scm)


def _fold_for(v: Voice, text: str) -> str:
    """Festival's diphone voices need text in their 8-bit charset; drop what it cannot carry."""
    if v.encoding == "utf-8":
        return text
    try:
        text.encode(v.encoding)
        return text
    except UnicodeEncodeError:
        t = unicodedata.normalize("NFKD", text)
        return "".join(c for c in t if c.encode(v.encoding, errors="ignore"))


def tts_voice(out_dir: Path, parts_dir: Path, scratch: Path, voice: Voice, minutes: float, texts: TextBank,
              seed: int = 777, log=print) -> float:
    writer = PartWriter(parts_dir / f"speech-tts-{voice.engine}-{voice.name.replace('+', '_')}-{voice.language}.jsonl")
    have = sum(r["duration"] for r in writer.rows())
    version = _pkg_version(voice.package)
    tmpdir = Path(tempfile.mkdtemp(prefix="tts-", dir=str(scratch)))
    i = 0
    batch_n = 12 if voice.engine == "festival" else 1
    empty = 0
    try:
        while have < minutes * 60:
            units = []
            while len(units) < batch_n:
                unit = f"{voice.group}:{i:05d}"
                if not writer.has(unit, out_dir):
                    units.append((i, unit))
                i += 1
                if i > 100000:
                    break
            if not units:
                break
            jobs = []
            for j, unit in units:
                rng = np.random.default_rng([seed, int(short_hash(unit, n=8), 16)])
                text, prov = texts.sentence(voice.language, rng)
                text = _fold_for(voice, text)
                wav = str(tmpdir / f"{j:05d}.wav")
                jobs.append((j, unit, text, prov, wav, rng))
            if voice.engine == "festival":
                _festival_batch(voice, [(t, w, float(r.uniform(0.9, 1.2))) for _, _, t, _, w, r in jobs])
            for j, unit, text, prov, wav, rng in jobs:
                try:
                    if voice.engine == "espeak-ng":
                        _espeak(voice, text, wav, rng)
                    elif voice.engine == "flite":
                        _flite(voice, text, wav, rng)
                except (subprocess.SubprocessError, OSError):
                    pass
                rows = []
                if os.path.exists(wav) and os.path.getsize(wav) > 1000:
                    y = trim_silence(load_audio(wav))
                    meta = ClipMeta("speech", "speech", voice.group, voice.package, version,
                                    f"{voice.engine} voice {voice.name}: text from {prov}: {text[:120]}",
                                    voice.licence, split=split_of(voice.group), gender=voice.gender,
                                    language=voice.language)
                    for k, piece in enumerate(cut_pieces(y)):
                        cid = f"tts-{short_hash(unit)}-{k}"
                        rel, sha, d = write_clip(out_dir, "speech", "speech", cid, piece)
                        rows.append(manifest_row(cid, rel, sha, d, meta))
                        have += d
                    os.unlink(wav)
                writer.add(unit, rows)
                empty = 0 if rows else empty + 1
            if empty >= 50:
                log(f"speech/tts {voice.group}: 50 empty utterances in a row, giving up")
                break
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
        writer.close()
    log(f"speech/tts {voice.group}: {have / 60:.1f} min")
    return have


_VERS: dict[str, str] = {}


def _pkg_version(pkg: str) -> str:
    if pkg not in _VERS:
        from .sources import dpkg_version
        _VERS[pkg] = dpkg_version(pkg) or "unknown"
    return _VERS[pkg]
