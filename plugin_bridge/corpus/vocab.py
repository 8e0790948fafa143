"""Label vocabulary with text queries -> ``models/training/labels.json``.

Only labels present in the corpus with enough unique material are written; concepts the data cannot
support are listed under ``unsupported`` so the app can warn (data_rules.md §3).
"""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

MIN_CLIPS = 15

# label -> (family, confusable group, synonyms, captions)
VOCAB: dict[str, tuple[str, str, list[str], list[str]]] = {
    # ------------------------------------------------------------------ instruments
    "piano": ("instruments", "keys", ["acoustic piano", "grand piano", "upright piano", "keyboard", "pianoforte"],
              ["a solo piano playing a gentle melody", "someone playing chords on a grand piano",
               "piano arpeggios", "a bright upright piano tune", "classical piano music"]),
    "electric_piano": ("instruments", "keys", ["electric piano", "rhodes", "e-piano", "wurlitzer", "keys"],
                       ["a mellow electric piano playing chords", "rhodes piano comping", "soft electric piano melody",
                        "a jazzy e-piano part", "electric piano in a pop song"]),
    "organ": ("instruments", "keys", ["organ", "church organ", "hammond organ", "pipe organ", "drawbar organ"],
              ["a church organ playing sustained chords", "a hammond organ riff", "pipe organ music",
               "rock organ chords", "an organ holding a long chord"]),
    "acoustic_guitar": ("instruments", "guitar", ["acoustic guitar", "nylon guitar", "classical guitar", "steel string guitar", "guitar strumming"],
                        ["someone strumming an acoustic guitar", "fingerpicked acoustic guitar",
                         "a classical nylon-string guitar melody", "acoustic guitar chords", "a folk guitar strum"]),
    "electric_guitar": ("instruments", "guitar", ["electric guitar", "distorted guitar", "overdriven guitar", "clean guitar", "jazz guitar"],
                        ["a distorted electric guitar riff", "clean electric guitar chords", "an electric guitar solo",
                         "rock guitar power chords", "a jazz guitar melody"]),
    "bass_guitar": ("instruments", "bass", ["bass guitar", "electric bass", "bass line", "fretless bass", "bass"],
                    ["a funky bass guitar line", "an electric bass playing root notes", "a walking bass line",
                     "fretless bass groove", "deep bass guitar notes"]),
    "violin": ("instruments", "strings", ["violin", "fiddle", "solo violin"],
               ["a solo violin playing a melody", "a fiddle tune", "expressive violin with vibrato",
                "a violin playing high notes", "classical violin line"]),
    "cello": ("instruments", "strings", ["cello", "violoncello"],
              ["a cello playing a slow melody", "a deep bowed cello", "solo cello music",
               "warm cello notes", "a cello line in a low register"]),
    "string_ensemble": ("instruments", "strings", ["strings", "string section", "string orchestra", "orchestral strings", "tremolo strings"],
                        ["an orchestral string section holding chords", "lush strings", "a string ensemble swelling",
                         "cinematic strings", "tremolo strings"]),
    "harp": ("instruments", "plucked", ["harp", "concert harp", "orchestral harp"],
             ["a harp playing arpeggios", "gentle harp glissando-like runs", "a concert harp melody",
              "plucked harp chords", "harp music"]),
    "trumpet": ("instruments", "brass", ["trumpet", "muted trumpet", "cornet"],
                ["a trumpet playing a melody", "a muted jazz trumpet", "a bright trumpet fanfare-like line",
                 "solo trumpet", "trumpet notes"]),
    "brass": ("instruments", "brass", ["trombone", "tuba", "french horn", "brass section", "horns"],
              ["a trombone melody", "a brass section playing chords", "a french horn line", "a tuba bass line",
               "low brass instruments"]),
    "saxophone": ("instruments", "woodwind", ["saxophone", "sax", "alto sax", "tenor sax", "baritone sax"],
                  ["a saxophone solo", "a smooth tenor sax melody", "alto saxophone line", "jazz sax",
                   "a baritone sax playing low notes"]),
    "clarinet": ("instruments", "woodwind", ["clarinet"],
                 ["a clarinet playing a melody", "a soft clarinet line", "solo clarinet", "woody clarinet tone",
                  "a clarinet in a low register"]),
    "flute": ("instruments", "woodwind", ["flute", "piccolo", "concert flute"],
              ["a flute playing a melody", "an airy flute line", "a piccolo playing high notes", "solo flute",
               "a breathy flute tune"]),
    "synth_lead": ("instruments", "synth", ["synth lead", "lead synth", "square lead", "saw lead", "synthesizer melody"],
                   ["a synthesizer lead melody", "a square wave synth lead", "a buzzy saw lead", "an 80s synth line",
                    "electronic lead synth"]),
    "synth_pad": ("instruments", "synth", ["synth pad", "pad", "ambient pad", "synthesizer chords", "warm pad"],
                  ["a warm synth pad", "ambient synthesizer chords", "a slowly evolving pad", "a soft background pad",
                   "lush electronic pad"]),
    "choir": ("instruments", "voice", ["choir", "choir aahs", "voices oohs", "vocal pad", "chorus"],
              ["a choir singing aah", "a vocal pad of oohs", "a choir holding chords", "ethereal choir voices",
               "sung vowels by a choir"]),
    "mallets": ("instruments", "mallet", ["marimba", "xylophone", "vibraphone", "mallet percussion", "vibes"],
                ["a marimba melody", "a xylophone playing quick notes", "a vibraphone chord", "mallet percussion",
                 "wooden marimba tones"]),
    "drums": ("instruments", "drums", ["drums", "drum kit", "drum set", "percussion", "beat", "drum loop"],
              ["a drum kit playing a rock beat", "drums and cymbals", "a funky drum groove", "a drum machine beat",
               "brushes on a jazz drum kit"]),
    # ------------------------------------------------------------------ speech
    "speech": ("speech", "speech", ["speech", "voice", "dialogue", "dialog", "talking", "narration", "spoken words",
                                    "man speaking", "woman speaking", "voice over", "vo", "dx", "spoken voice",
                                    "conversation", "voices"],
               ["a man speaking", "a woman talking", "dialogue", "someone reading a sentence aloud",
                "a person speaking in a foreign language", "narration voice over", "the dialogue track",
                "people talking", "an actor delivering a line"]),
    # ------------------------------------------------------------------ music (full mixes)
    "music": ("music", "music", ["music", "score", "soundtrack", "background music", "music bed", "song",
                                 "underscore", "mx", "instrumental", "the music"],
              ["background music", "the film score", "an orchestral soundtrack", "a song playing",
               "instrumental music with drums and bass", "a music bed under the dialogue",
               "game music", "a band playing"]),
    # ------------------------------------------------------------------ environmental
    "birds": ("environmental", "animals", ["birds", "birdsong", "bird chirping", "songbirds", "owl", "bird calls"],
              ["birds chirping in a forest", "birdsong in the morning", "an owl hooting", "bird calls outdoors",
               "small birds singing"]),
    "cattle": ("environmental", "farm animals", ["cow", "cattle", "mooing", "ox", "bull"],
               ["a cow mooing", "cattle lowing on a farm", "an ox grunting", "cows in a field", "a mooing cow nearby"]),
    "chicken": ("environmental", "farm animals", ["chicken", "hen", "rooster", "clucking", "crowing"],
                ["a chicken clucking", "a rooster crowing", "hens on a farm", "chickens in a barnyard",
                 "a clucking hen"]),
    "horse": ("environmental", "farm animals", ["horse", "neigh", "whinny", "horse snorting"],
              ["a horse neighing", "a horse whinnying", "a snorting horse", "horses on a farm", "a horse in a stable"]),
    "pig": ("environmental", "farm animals", ["pig", "oink", "grunting pig", "squealing pig", "hog"],
            ["a pig oinking", "pigs grunting", "a squealing pig", "pigs on a farm", "a hog snorting"]),
    "sheep_goat": ("environmental", "farm animals", ["sheep", "goat", "bleating", "lamb", "baa"],
                   ["a sheep bleating", "goats bleating", "a lamb calling", "a flock of sheep", "baaing sheep"]),
    "wolf": ("environmental", "animals", ["wolf", "wolf howl", "coyote", "howling"],
             ["a wolf howling", "coyotes howling at night", "a howling wolf in the distance", "wolves howl",
              "a growling wolf"]),
    "insects": ("environmental", "animals", ["insects", "crickets", "cicadas", "chirping crickets"],
                ["crickets chirping at night", "insects buzzing", "a night full of crickets", "cicadas",
                 "chirping insects in the grass"]),
    "scream": ("environmental", "human sounds", ["scream", "yell", "pain cry", "shout", "groan", "death cry"],
               ["a man screaming", "a woman screaming", "a cry of pain", "someone yelling and groaning",
                "a scream in a battle"]),
    "crowd": ("environmental", "human sounds", ["crowd", "chatter", "murmur", "marketplace", "tavern", "walla"],
              ["a crowd chattering", "people talking in a busy market", "murmur of a tavern crowd",
               "background walla", "a noisy gathering"]),
    "footsteps": ("environmental", "foley", ["footsteps", "steps", "walking", "running footsteps", "footfall"],
                  ["footsteps on gravel", "someone walking on snow", "footsteps on a wooden floor",
                   "a person running", "steps on grass"]),
    "door": ("environmental", "foley", ["door", "door opening", "door closing", "door slam", "gate"],
             ["a door opening and closing", "a door slamming", "a creaky door", "a metal door closing",
              "a gate opening"]),
    "glass_breaking": ("environmental", "foley", ["glass breaking", "shattering glass", "smash", "broken window"],
                       ["glass shattering", "a window breaking", "a bottle smashing", "breaking glass",
                        "glass pieces falling"]),
    "rain": ("environmental", "weather", ["rain", "rainfall", "drizzle", "downpour", "rain storm"],
             ["rain falling", "heavy rain", "a steady downpour", "light rain outside", "rainfall on the ground"]),
    "thunder": ("environmental", "weather", ["thunder", "thunderstorm", "rumble", "lightning strike"],
                ["a thunder clap", "rolling thunder", "a distant thunderstorm", "thunder rumbling",
                 "lightning and thunder"]),
    "wind": ("environmental", "weather", ["wind", "gust", "windstorm", "blizzard", "howling wind", "breeze"],
             ["strong wind blowing", "wind howling", "gusts of wind", "a blizzard", "wind through trees"]),
    "stream": ("environmental", "water", ["river", "stream", "creek", "waterfall", "running water", "brook", "fountain"],
               ["a river flowing", "a babbling brook", "a waterfall", "running water", "a stream over rocks"]),
    "ocean_waves": ("environmental", "water", ["ocean", "waves", "sea", "surf", "waves crashing"],
                    ["ocean waves crashing", "waves on a beach", "the sea", "surf rolling in", "waves hitting rocks"]),
    "water_splash": ("environmental", "water", ["splash", "water splash", "splashing", "wading", "drip"],
                     ["a splash in water", "someone wading through water", "splashing water", "water drops",
                      "a small splash"]),
    "fire": ("environmental", "fire", ["fire", "crackling fire", "flames", "campfire", "burning", "bonfire"],
             ["a crackling fire", "a campfire burning", "roaring flames", "a fireplace", "wood burning"]),
    "explosion": ("environmental", "impacts", ["explosion", "blast", "boom", "detonation", "bomb"],
                  ["a loud explosion", "a distant blast", "a grenade exploding", "a big boom", "an explosion with debris"]),
    "gunshot": ("environmental", "impacts", ["gunshot", "gunfire", "shot", "rifle", "pistol", "machine gun"],
                ["a gunshot", "rapid gunfire", "a rifle shot", "a pistol firing", "a machine gun burst"]),
    "sword_clash": ("environmental", "impacts", ["sword", "sword clash", "blade", "metal clang", "sword fight"],
                    ["swords clashing", "a sword hitting a shield", "metal blades clanging", "a sword fight",
                     "clang of steel"]),
    "bow_arrow": ("environmental", "impacts", ["bow and arrow", "arrow", "archery", "arrow impact", "bow shot"],
                  ["an arrow being shot from a bow", "arrows hitting wood", "an arrow whooshing", "archery",
                   "an arrow thudding into a target"]),
    "wood_chopping": ("environmental", "work", ["wood chopping", "axe", "chopping", "tree falling", "lumberjack"],
                      ["an axe chopping wood", "chopping a tree", "a tree falling", "someone splitting logs",
                       "lumberjack at work"]),
    "sawing": ("environmental", "work", ["sawing", "saw", "hand saw", "sawmill", "cutting wood"],
               ["a hand saw cutting wood", "sawing a plank", "a sawmill", "the rasp of a saw", "a bench saw"]),
    "hammering": ("environmental", "work", ["hammering", "hammer", "anvil", "blacksmith", "nailing", "smithing"],
                  ["a hammer hitting nails", "a blacksmith hammering on an anvil", "hammering on wood",
                   "metal hammer blows", "construction hammering"]),
    "digging": ("environmental", "work", ["digging", "mining", "pickaxe", "shovel", "hoe", "stone mining"],
                ["a pickaxe striking rock", "someone digging with a shovel", "mining stone", "a hoe in the soil",
                 "chipping at stone"]),
    "machinery": ("environmental", "machines", ["machinery", "machine hum", "motor", "mill", "pump", "engine room", "drone"],
                  ["a machine humming", "industrial machinery", "a pump running", "a mill turning",
                   "a droning motor"]),
    "engine": ("environmental", "machines", ["engine", "vehicle", "diesel engine", "truck", "motor idling"],
               ["a diesel engine idling", "a vehicle engine running", "a truck moving", "an engine revving",
                "motor noise"]),
}

ENV_NEW = {
    "aircraft": ("environmental", "vehicles", ["aircraft", "airplane", "plane", "helicopter", "jet", "plane flyby", "aeroplane"],
                 ["an airplane flying over", "a helicopter hovering", "a jet passing overhead", "aircraft engine noise",
                  "a plane flyby"]),
    "traffic": ("environmental", "vehicles", ["traffic", "road traffic", "cars passing", "street noise", "city traffic", "highway"],
                ["traffic on a busy street", "cars driving past", "city traffic noise", "the hum of a highway",
                 "road noise in town"]),
    "train": ("environmental", "vehicles", ["train", "railway", "locomotive", "rail", "train passing"],
              ["a train passing by", "a locomotive on the rails", "railway noise", "a train rumbling",
               "wheels clacking on rails"]),
    "bell": ("environmental", "bells", ["bell", "chime", "wind chimes", "church bell", "ding", "gong", "dong"],
             ["a bell ringing", "wind chimes tinkling", "a church bell tolling", "a ding of a bell", "metallic chimes"]),
    "horn": ("environmental", "alarm", ["horn", "war horn", "horn signal", "hunting horn", "blowing a horn"],
             ["a horn signal blowing", "a war horn sounding", "a long horn call", "someone blowing a hunting horn",
              "a horn blast"]),
    "laughter": ("environmental", "human sounds", ["laughter", "laugh", "laughing", "giggle", "chuckle", "haha"],
                 ["a man laughing", "someone laughing loudly", "an evil laugh", "a hearty chuckle", "people laughing"]),
    "duck": ("environmental", "animals", ["duck", "quack", "goose", "ducks quacking"],
             ["a duck quacking", "ducks on a pond", "a goose honking", "quacking", "water birds calling"]),
    "hum": ("environmental", "machines", ["hum", "mains hum", "buzz", "60 cycle hum", "50 hz hum", "electrical hum",
                                          "ground loop hum", "ac hum", "power line hum"],
            ["a 60 cycle hum", "electrical mains hum", "a buzzing ground loop", "a low 50 hertz hum",
             "transformer buzz", "hum on the recording"]),
    "hiss": ("environmental", "noise", ["hiss", "noise", "static", "white noise", "pink noise", "tape hiss",
                                        "broadband noise", "brown noise", "background noise"],
             ["tape hiss", "white noise", "a steady hiss", "static noise", "broadband noise under the recording",
              "pink noise"]),
    "room_tone": ("environmental", "noise", ["room tone", "room noise", "ambience", "air conditioning", "presence",
                                             "quiet room", "background ambience"],
                  ["room tone", "the quiet noise of an empty room", "air conditioning rumble",
                   "background noise of a room", "low level room ambience"]),
    "wind_noise": ("environmental", "noise", ["wind noise", "mic wind", "wind rumble", "wind buffeting", "plosive rumble",
                                              "wind on the microphone"],
                   ["wind noise on the microphone", "wind buffeting the mic", "low rumble of wind on a lavalier",
                    "gusty wind noise", "mic wind rumble"]),
    "crackle": ("environmental", "clicks", ["crackle", "clicks", "vinyl crackle", "pops", "record noise", "clicking",
                                            "digital clicks"],
                ["vinyl crackle", "clicks and pops", "a scratchy old record", "crackling noise", "surface noise of a record"]),
    "beep": ("environmental", "alarm", ["beep", "beeping", "bleep", "censor beep", "tone", "test tone", "reversing beeper"],
             ["a beep", "repeated beeping", "a censor bleep", "a microwave beeping", "a truck reversing beeper"]),
    "alarm": ("environmental", "alarm", ["alarm", "smoke alarm", "fire alarm", "alarm clock", "warning tone", "buzzer"],
              ["a smoke alarm beeping", "an alarm going off", "an alarm clock ringing", "a two tone alarm",
               "a warning buzzer"]),
    "phone_ring": ("environmental", "alarm", ["phone ring", "telephone ringing", "phone ringing", "ringtone", "ringback",
                                              "telephone"],
                   ["a telephone ringing", "a phone ringing in the room", "the ringback tone of a call",
                    "an old phone ring", "ring ring"]),
    "siren": ("environmental", "alarm", ["siren", "police siren", "ambulance", "fire engine siren", "emergency siren",
                                         "wail", "yelp"],
              ["a police siren passing", "an ambulance siren", "a wailing siren", "a fire truck siren in the distance",
               "an emergency vehicle going by"]),
    "applause": ("environmental", "human sounds", ["applause", "clapping", "audience applause", "ovation", "hand clapping"],
                 ["an audience applauding", "people clapping", "a round of applause", "a standing ovation",
                  "clapping hands"]),
}
VOCAB.update(ENV_NEW)
# thin-label extras (v1 labels kept): more phrasings for what editors type
for _lab, _extra in {"birds": ["birds tweeting"], "wind": ["wind blowing"], "rain": ["rain on a roof"],
                     "fire": ["fire crackling"], "crowd": ["people", "background voices", "crowd noise"],
                     "footsteps": ["foley steps"], "explosion": ["explosions"], "gunshot": ["gun shots"],
                     "machinery": ["factory noise"], "engine": ["car engine"], "insects": ["bugs", "bees buzzing"],
                     "stream": ["water running"], "ocean_waves": ["beach"], "thunder": ["storm"],
                     "door": ["door creak"], "glass_breaking": ["glass smash"], "wolf": ["wolves"],
                     "scream": ["screaming"], "horse": ["horses"], "cattle": ["cows"], "chicken": ["chickens"],
                     "pig": ["pigs"], "sheep_goat": ["sheep baaing"], "water_splash": ["water drips"],
                     "sawing": ["saw cutting"], "hammering": ["hammer blows"], "digging": ["pick axe"],
                     "wood_chopping": ["chopping wood"], "sword_clash": ["swords"], "bow_arrow": ["arrows"],
                     "cello": ["cello music", "bowed cello", "cello section"], "violin": ["violin music", "bowed violin"],
                     "harp": ["harp glissando", "plucked harp"], "trumpet": ["trumpet solo", "jazz trumpet"],
                     "clarinet": ["clarinet solo", "bass clarinet", "woodwind clarinet", "clarinet melody"],
                     "flute": ["flute solo", "wooden flute"], "duck": ["geese"],
                     "choir": ["vocal choir"]}.items():
    for _w in _extra:
        if _w not in VOCAB[_lab][2]:
            VOCAB[_lab][2].append(_w)

# queries meaning a whole family or a set of labels; the mixer makes targets summing 1-3 members
UMBRELLAS = {
    # sound effects = the environmental family minus the clean-up noises (hum, hiss, room tone, mic wind,
    # crackle are what an editor removes, not an effect track): explicit members, filled in at write time
    "effects": {"members_family_except": ("environmental", ["hum", "hiss", "room_tone", "wind_noise", "crackle"]),
                "synonyms": ["effects", "sound effects", "sfx", "fx", "foley", "noises", "sounds", "hard effects"],
                "captions": ["the sound effects", "all the sound effects", "foley and effects", "everything that is not dialogue or music",
                             "the effects track"]},
    "ambience": {"members": ["rain", "wind", "stream", "ocean_waves", "insects", "crowd", "traffic", "room_tone", "birds",
                             "thunder", "fire", "machinery"],
                 "synonyms": ["ambience", "ambient sound", "atmosphere", "atmos", "background sound", "environment sound",
                              "soundscape", "bg"],
                 "captions": ["the background ambience", "environmental atmosphere", "the ambient soundscape",
                              "outdoor ambience", "the atmos track"]},
    "noise": {"members": ["hum", "hiss", "room_tone", "wind_noise", "crackle"],
              "synonyms": ["noise", "unwanted noise", "background noise", "clean-up", "noise floor"],
              "captions": ["the noise in the recording", "hum and hiss", "unwanted background noise",
                           "noise to remove", "the noise floor"]},
    "instruments": {"members_family": "instruments",
                    "synonyms": ["instruments", "instrumental", "band", "musical instruments", "instrumentation", "the band"],
                    "captions": ["the instruments", "all instruments", "the band playing", "instrumental parts",
                                 "everything except the voice"]},
}

# concepts that a label now covers: dropped from "unsupported" when the label is in the corpus
COVERED_BY = {"telephone ringing": "phone_ring", "siren": "siren", "alarm": "alarm", "applause": "applause",
              "laughter": "laughter", "helicopter": "aircraft", "airplane": "aircraft", "bell": "bell", "duck": "duck",
              "car horn": "horn", "music (full mix)": "music", "train": "train"}

SINGING_NOTE = ("No allowed source has singing: the hedgewars 'Singer' voice pack lives under Data/Sounds, which "
                "debian/copyright licenses GFDL-1.3 (not allowed); choir 'aah/ooh' pads (FluidR3) are the only sung "
                "vowels, so 'singing' and 'vocals' are not offered.")

UNSUPPORTED = {
    "dog barking": "only ~5 dog clips exist in the registries, all reserved for evaluation",
    "cat meowing": "one clip in the registries",
    "typing": "no keyboard recordings available",
    "applause": "about 5 clips, not enough to train",
    "baby crying": "no recordings available",
    "telephone ringing": "only synthetic UI ringtones",
    "car horn": "horn/siren clips are nearly all in reserved packages",
    "siren": "horn/siren clips are nearly all in reserved packages",
    "helicopter": "aircraft clips are mostly in reserved packages",
    "airplane": "aircraft clips are mostly in reserved packages",
    "laughter": "about 11 clips, not enough to train",
    "singing voice": "no singing data apart from synthetic choir pads (hedgewars 'Singer' voices are GFDL-1.3)",
    "vocals": "no singing data apart from synthetic choir pads (hedgewars 'Singer' voices are GFDL-1.3)",
    "keyboard clicks": "no recordings available",
    "clock ticking": "too few clips",
    "train": "too few clips",
    "elephant": "too few clips",
    "lion roar": "too few clips",
    "frog": "too few clips",
    "duck": "too few clips",
    "bell": "too few clips",
    "alarm": "only synthetic UI alarms",
    "vacuum cleaner": "single clip, reserved",
    "washing machine": "single clip, reserved",
    "music (full mix)": "the model separates single instruments; full mixes are not a trained concept",
}


def write_labels_json(rows: list[dict], path: Path, min_clips: int = 1) -> dict:
    """Labels present in ``rows`` (the manifest already dropped thin labels, see build.drop_thin_labels)."""
    counts = Counter(r["label"] for r in rows)
    fams = {r["label"]: r["family"] for r in rows}
    labels = {}
    dropped = {}
    for lab, n in sorted(counts.items()):
        if lab not in VOCAB:
            dropped[lab] = "no vocabulary entry"
            continue
        if n < min_clips:
            dropped[lab] = f"only {n} clips"
            continue
        fam, grp, syn, caps = VOCAB[lab]
        assert fam == fams[lab], (lab, fam, fams[lab])
        labels[lab] = {"family": fam, "group": grp, "synonyms": syn, "captions": caps, "clips": n}
    unsupported = {k: v for k, v in UNSUPPORTED.items() if COVERED_BY.get(k) not in labels}
    for lab, why in dropped.items():
        unsupported[lab.replace("_", " ")] = f"dropped from the corpus: {why}"
    for lab in VOCAB:
        if lab not in labels and lab not in dropped:
            unsupported.setdefault(lab.replace("_", " "), "not present in the corpus")
    umbrellas = {}
    for name, u in UMBRELLAS.items():
        u = dict(u)
        if "members_family_except" in u:
            fam, skip = u.pop("members_family_except")
            u["members"] = sorted(lab for lab, e in labels.items() if e["family"] == fam and lab not in skip)
        if "members" in u:
            u["members"] = [m for m in u["members"] if m in labels]
            if not u["members"]:
                continue
        elif not any(e["family"] == u["members_family"] for e in labels.values()):
            continue
        umbrellas[name] = u
    data = {"version": 2, "min_clips_per_label": MIN_CLIPS, "labels": labels, "umbrellas": umbrellas,
            "singing": SINGING_NOTE,
            "unsupported": sorted(unsupported),
            "unsupported_reasons": dict(sorted(unsupported.items()))}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    tmp.replace(path)
    return data
