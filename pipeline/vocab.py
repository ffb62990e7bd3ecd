"""The unified vocabulary: one token list for every task, and each task's targets as token ids.

Token order (ids are positions): special, task, time t0..t59, modality, then the classes of
AVE, LLP, VGG-SS, AVSBench S4, AVSS and the MUSIC-AVQA answers, in that order. Names of
different benchmarks that normalise to the same key (lower case, `_`, `-` and `,` read as
spaces: LLP "Vacuum_cleaner" and AVSS "vacuum-cleaner") share one token, so the token head
sees one concept once; background (AVE class 28, AVSS class 0) is one token. Every token has a
text phrase; stage one stores the CLIP text embedding of each phrase (`shared/vocab_emb`).

A store keeps its vocabulary (`attrs["vocab"]`: version, sha, tokens, phrases). MUSIC-AVQA
answers found in the user's files but not in the 41 below (the official code is 42-way and its
training file is not public) are appended after the fixed tokens (`Vocab.extended`), so every
other store's vocabulary stays a prefix of that one.

Serialisation (`SERIALISERS`, task -> (to_tokens, from_tokens)) maps a clip's target arrays
(named as in the store) to a fixed-length int32 token row padded with <pad> (id 0) and back:
    ave         labels (T,) class index per segment, 28 = background  -> T class tokens
    llp         video_labels (25,) multi-hot                           -> class tokens, sorted
    llp-events  gt_audio, gt_visual (25, T) dense evaluation labels    -> [modality, class,
                t_first, t_last] per maximal run, audio first, classes in order (t_last inclusive,
                so t0..t59 cover T = 60)
    vggss       frame_index, class_index (-1: unlabelled)              -> [t_frame, class or <pad>]
    avs-s4      class_index (the clip's category)                      -> [class]
    avss        classes_present (71,) multi-hot of the valid masks     -> class tokens, sorted
    music-avqa  answer (index into the store's answer list)           -> [answer]
MS3 has no class, answer or time target (its masks are the whole target): no tokens.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import cached_property

import numpy as np

VERSION = 1
PAD, BOS, EOS = "<pad>", "<bos>", "<eos>"
TASKS = ("ave", "llp", "vggss", "avs-s4", "avs-ms3", "avss", "music-avqa")
TASK_PHRASES = {
    "ave": "audio-visual event localisation", "llp": "audio-visual video parsing",
    "vggss": "sound source localisation", "avs-s4": "single sound source segmentation",
    "avs-ms3": "multiple sound source segmentation", "avss": "audio-visual semantic segmentation",
    "music-avqa": "audio-visual question answering",
}
TASK_PROMPTS = {  # embedded in stage one; the model reads them as its task instruction
    "ave": "Which event is both heard and seen in each second of the video?",
    "llp": "Which events are heard, which are seen, and when?",
    "vggss": "Where in the picture is the sound coming from?",
    "avs-s4": "Segment the object that makes the sound.",
    "avs-ms3": "Segment every object that makes a sound.",
    "avss": "Segment and name every object that makes a sound.",
    "music-avqa": "Answer the question about the sounds and sights of the music performance.",
}
N_TIMES = 60
MODALITIES = {"<audio>": "the sound", "<visual>": "the picture", "<audio-visual>": "both sound and picture"}
BACKGROUND = "background"

AVE_CLASSES = [  # numbered by first appearance in Annotations.txt; background = 28
    "Church bell", "Male speech, man speaking", "Bark", "Fixed-wing aircraft, airplane",
    "Race car, auto racing", "Female speech, woman speaking", "Helicopter", "Violin, fiddle",
    "Flute", "Ukulele", "Frying (food)", "Truck", "Shofar", "Motorcycle", "Acoustic guitar",
    "Train horn", "Clock", "Banjo", "Goat", "Baby cry, infant cry", "Bus", "Chainsaw", "Cat",
    "Horse", "Toilet flush", "Rodents, rats, mice", "Accordion", "Mandolin",
]
LLP_CLASSES = [
    "Speech", "Car", "Cheering", "Dog", "Cat", "Frying_(food)", "Basketball_bounce", "Fire_alarm",
    "Chainsaw", "Cello", "Banjo", "Singing", "Chicken_rooster", "Violin_fiddle", "Vacuum_cleaner",
    "Baby_laughter", "Accordion", "Lawn_mower", "Motorcycle", "Helicopter", "Acoustic_guitar",
    "Telephone_bell_ringing", "Baby_cry_infant_cry", "Blender", "Clapping",
]
_VGGSS = """
air conditioning noise | air horn | airplane | airplane flyby | alarm clock ringing |
alligators, crocodiles hissing | baby crying | baby laughter | baltimore oriole calling | barn
swallow calling | bathroom ventilation fan running | beat boxing | bird chirping, tweeting |
bird squawking | bird wings flapping | black capped chickadee calling | blowtorch igniting |
bull bellowing | canary calling | cap gun shooting | car engine idling | car engine knocking |
car engine starting | car passing by | cat caterwauling | cat growling | cat hissing | cat
meowing | cat purring | cattle mooing | cattle, bovinae cowbell | chainsawing trees | cheetah
chirrup | chicken clucking | chicken crowing | child singing | child speech, kid speaking |
children shouting | chimpanzee pant-hooting | chinchilla barking | chipmunk chirping | church
bell ringing | civil defense siren | cow lowing | coyote howling | cricket chirping | crow
cawing | cuckoo bird calling | dinosaurs bellowing | disc scratching | dog barking | dog baying
| dog bow-wow | dog growling | dog howling | dog whimpering | donkey, ass braying | driving
buses | driving motorcycle | driving snowmobile | eagle screaming | electric grinder grinding |
electric shaver, electric razor shaving | elephant trumpeting | eletric blender running | elk
bugling | engine accelerating, revving, vroom | female singing | female speech, woman speaking |
fire truck siren | fireworks banging | fly, housefly buzzing | forging swords | fox barking |
francolin calling | gibbon howling | goat bleating | hair dryer drying | hedge trimmer running |
helicopter | horse clip-clop | ice cream truck, ice cream van | lathe spinning | lawn mowing |
lighting firecrackers | lions growling | lions roaring | lip smacking | machine gun shooting |
magpie calling | male singing | male speech, man speaking | missile launch | motorboat,
speedboat acceleration | mouse squeaking | mynah bird singing | ocean burbling | opening or
closing car electric windows | opening or closing drawers | orchestra | otter growling | owl
hooting | parrot talking | penguins braying | people babbling | people battle cry | people belly
laughing | people booing | people burping | people cheering | people coughing | people crowd |
people eating apple | people eating crisps | people eating noodle | people finger snapping |
people gargling | people giggling | people hiccup | people humming | people marching | people
nose blowing | people screaming | people shuffling | people slurping | people sneezing | people
sniggering | people sobbing | people whispering | people whistling | pheasant crowing | pigeon,
dove cooing | playing accordion | playing acoustic guitar | playing banjo | playing bass drum |
playing bass guitar | playing bassoon | playing bongo | playing bugle | playing castanets |
playing cello | playing clarinet | playing congas | playing cornet | playing cymbal | playing
didgeridoo | playing djembe | playing double bass | playing drum kit | playing electric guitar |
playing electronic organ | playing erhu | playing flute | playing french horn | playing
glockenspiel | playing gong | playing guiro | playing hammond organ | playing harmonica |
playing harp | playing harpsichord | playing mandolin | playing oboe | playing piano | playing
saxophone | playing shofar | playing snare drum | playing steel guitar, slide guitar | playing
steelpan | playing table tennis | playing tambourine | playing theremin | playing timbales |
playing trombone | playing trumpet | playing tympani | playing ukulele | playing violin, fiddle
| playing washboard | playing zither | police car (siren) | popping popcorn | race car, auto
racing | railroad car, train wagon | reversing beeps | rowboat, canoe, kayak rowing | sea lion
barking | sharpen knife | sheep bleating | singing bowl | singing choir | skateboarding |
skidding | slot machine | smoke detector beeping | snake hissing | snake rattling | splashing
water | squishing water | subway, metro, underground | tap dancing | tapping guitar | telephone
bell ringing | toilet flushing | tractor digging | train horning | train wheels squealing |
train whistling | turkey gobbling | typing on computer keyboard | typing on typewriter | using
sewing machines | vacuum cleaner cleaning floors | warbler chirping | waterfall burbling | whale
calling | wind chime | wood thrush calling | woodpecker pecking tree | yodelling"""
VGGSS_CLASSES = [n.strip() for n in " ".join(_VGGSS.split()).split("|")]   # sorted; 221
S4_CLASSES = [  # AVSBench-object single-source categories (folder names)
    "ambulance_siren", "baby_laughter", "cap_gun_shooting", "cat_meowing", "chainsawing_trees",
    "coyote_howling", "dog_barking", "driving_buses", "female_singing", "helicopter",
    "horse_clip-clop", "lawn_mowing", "lions_roaring", "male_speech", "mynah_bird_singing",
    "playing_acoustic_guitar", "playing_glockenspiel", "playing_piano", "playing_tabla",
    "playing_ukulele", "playing_violin", "race_car", "typing_on_computer_keyboard",
]
AVSS_CLASSES = [  # palette index order (label2idx.json minus 1); 0 = background
    "background", "accordion", "airplane", "axe", "baby", "bassoon", "bell", "bird", "boat", "boy",
    "bus", "car", "cat", "cello", "clarinet", "clipper", "clock", "dog", "donkey", "drum", "duck",
    "elephant", "emergency-car", "erhu", "flute", "frying-food", "girl", "goose", "guitar", "gun",
    "guzheng", "hair-dryer", "handpan", "harmonica", "harp", "helicopter", "hen", "horse",
    "keyboard", "leopard", "lion", "man", "marimba", "missile-rocket", "motorcycle", "mower",
    "parrot", "piano", "pig", "pipa", "saw", "saxophone", "sheep", "sitar", "sorna", "squirrel",
    "tabla", "tank", "tiger", "tractor", "train", "trombone", "truck", "trumpet", "tuba",
    "ukulele", "utv", "vacuum-cleaner", "violin", "wolf", "woman",
]
AVQA_ANSWERS = [  # the 41 answers of json_update val/test, sorted
    "accordion", "acoustic_guitar", "bagpipe", "banjo", "bassoon", "cello", "clarinet", "congas",
    "drum", "eight", "electric_bass", "erhu", "five", "flute", "four", "guzheng", "indoor", "left",
    "middle", "more than ten", "nine", "no", "one", "outdoor", "piano", "pipa", "right",
    "saxophone", "seven", "simultaneously", "six", "suona", "three", "trumpet", "tuba", "two",
    "ukulele", "violin", "xylophone", "yes", "zero",
]
AVQA_TYPES = [  # "Group/Kind", the order of the paper's table
    "Audio/Counting", "Audio/Comparative", "Visual/Counting", "Visual/Location",
    "Audio-Visual/Existential", "Audio-Visual/Counting", "Audio-Visual/Location",
    "Audio-Visual/Comparative", "Audio-Visual/Temporal",
]
CLASSES = {  # each task's classes in its own index order (valid_ids follow this order)
    "ave": AVE_CLASSES + [BACKGROUND], "llp": LLP_CLASSES, "vggss": VGGSS_CLASSES,
    "avs-s4": S4_CLASSES, "avs-ms3": [], "avss": AVSS_CLASSES, "music-avqa": AVQA_ANSWERS,
}


def key(name: str) -> str:
    """The token of a class or answer name: lower case, `_ - ,` as spaces, single spaces."""
    return " ".join(re.sub(r"[_,\-]", " ", name.lower()).split())


def phrase(name: str) -> str:
    """Readable text for CLIP: underscores as spaces ("Frying_(food)" -> "frying (food)")."""
    return " ".join(name.replace("_", " ").split()).lower()


@dataclass(frozen=True)
class Vocab:
    tokens: tuple[str, ...]
    phrases: tuple[str, ...]

    @cached_property
    def index(self) -> dict[str, int]:
        return {t: i for i, t in enumerate(self.tokens)}

    def __len__(self) -> int:
        return len(self.tokens)

    @property
    def sha(self) -> str:
        return hashlib.sha256("\n".join(self.tokens).encode()).hexdigest()[:16]

    def id(self, token: str) -> int:
        return self.index[token]

    def class_ids(self, names: list[str]) -> np.ndarray:
        """Token ids of class or answer names (any benchmark's spelling)."""
        return np.array([self.index[key(n)] for n in names], dtype=np.int32)

    @cached_property
    def _task_ids(self) -> dict[str, np.ndarray]:
        return {task: self.class_ids(names) for task, names in CLASSES.items()}

    def valid_ids(self, task: str) -> np.ndarray:
        """The task's class tokens in its class order (what its head scores)."""
        return self._task_ids[task]

    def time(self, t: int) -> int:
        return self.index[f"t{t}"]

    def extended(self, names: list[str]) -> "Vocab":
        """This vocabulary plus class/answer names it lacks, appended (ids unchanged)."""
        new: dict[str, str] = {}
        for n in names:
            if key(n) not in self.index:
                new.setdefault(key(n), phrase(n))
        return Vocab(self.tokens + tuple(new), self.phrases + tuple(new.values()))

    def as_attrs(self) -> dict:
        return {"version": VERSION, "sha": self.sha, "tokens": list(self.tokens), "phrases": list(self.phrases)}


def build() -> Vocab:
    pairs = [(PAD, "nothing"), (BOS, "start"), (EOS, "end")]
    pairs += [(f"<{t}>", TASK_PHRASES[t]) for t in TASKS]
    pairs += [(f"t{t}", f"second {t}") for t in range(N_TIMES)]
    pairs += list(MODALITIES.items())
    seen = {}
    for names in (AVE_CLASSES + [BACKGROUND], LLP_CLASSES, VGGSS_CLASSES, S4_CLASSES, AVSS_CLASSES, AVQA_ANSWERS):
        for n in names:
            seen.setdefault(key(n), phrase(n))
    pairs += list(seen.items())
    return Vocab(tuple(t for t, _ in pairs), tuple(p for _, p in pairs))


VOCAB = build()

# ----------------------------------------------------------------------------- serialisation


def _pad(ids: list[int], length: int) -> np.ndarray:
    if len(ids) > length:
        raise ValueError(f"{len(ids)} tokens do not fit in {length}")
    return np.array(ids + [VOCAB.id(PAD)] * (length - len(ids)), dtype=np.int32)


def _unpad(tokens: np.ndarray) -> list[int]:
    return [int(t) for t in np.asarray(tokens) if t != VOCAB.id(PAD)]


def _position(valid: np.ndarray, token: int) -> int:
    hit = np.flatnonzero(valid == token)
    if hit.size == 0:
        raise ValueError(f"token {token} is not one of the task's classes")
    return int(hit[0])


def _set_to_tokens(task: str, multi_hot: np.ndarray, vocab: Vocab) -> np.ndarray:
    valid = vocab.valid_ids(task)
    return _pad([int(valid[c]) for c in np.flatnonzero(multi_hot)], len(valid))


def _set_from_tokens(task: str, tokens: np.ndarray, vocab: Vocab) -> np.ndarray:
    valid = vocab.valid_ids(task)
    out = np.zeros(len(valid), np.uint8)
    out[[_position(valid, t) for t in _unpad(tokens)]] = 1
    return out


def ave_to_tokens(t: dict, vocab: Vocab = VOCAB) -> np.ndarray:
    return vocab.valid_ids("ave")[np.asarray(t["labels"])].astype(np.int32)


def ave_from_tokens(tokens: np.ndarray, vocab: Vocab = VOCAB) -> dict:
    valid = vocab.valid_ids("ave")
    return {"labels": np.array([_position(valid, x) for x in tokens], np.int16)}


def llp_to_tokens(t: dict, vocab: Vocab = VOCAB) -> np.ndarray:
    return _set_to_tokens("llp", t["video_labels"], vocab)


def llp_from_tokens(tokens: np.ndarray, vocab: Vocab = VOCAB) -> dict:
    return {"video_labels": _set_from_tokens("llp", tokens, vocab)}


def runs(row: np.ndarray) -> list[tuple[int, int]]:
    """Maximal runs of 1s as (first, last) segment, last inclusive."""
    edges = np.diff(np.concatenate([[0], np.asarray(row, np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1) - 1))


def llp_events_to_tokens(t: dict, vocab: Vocab = VOCAB, length: int | None = None) -> np.ndarray:
    valid, ids = vocab.valid_ids("llp"), []
    for mod, gt in (("<audio>", t["gt_audio"]), ("<visual>", t["gt_visual"])):
        for c in np.flatnonzero(np.asarray(gt).any(axis=1)):
            row = np.asarray(gt)[c]
            ids += [x for a, b in runs(row) for x in (vocab.id(mod), int(valid[c]), vocab.time(a), vocab.time(b))]
    return _pad(ids, len(ids) if length is None else length)


def llp_events_from_tokens(tokens: np.ndarray, vocab: Vocab = VOCAB, T: int = 10) -> dict:
    valid, ids = vocab.valid_ids("llp"), _unpad(tokens)
    out = {"gt_audio": np.zeros((len(valid), T), np.uint8), "gt_visual": np.zeros((len(valid), T), np.uint8)}
    t0 = vocab.time(0)
    for k in range(0, len(ids), 4):
        mod, cls, a, b = ids[k : k + 4]
        name = "gt_audio" if mod == vocab.id("<audio>") else "gt_visual"
        out[name][_position(valid, cls), a - t0 : b - t0 + 1] = 1
    return out


def vggss_to_tokens(t: dict, vocab: Vocab = VOCAB) -> np.ndarray:
    """[t_frame, class]; class index -1 (an unlabelled training clip) -> <pad>."""
    c = int(t["class_index"])
    return np.array([vocab.time(int(t["frame_index"])), vocab.valid_ids("vggss")[c] if c >= 0 else vocab.id(PAD)],
                    np.int32)


def vggss_from_tokens(tokens: np.ndarray, vocab: Vocab = VOCAB) -> dict:
    cls = int(tokens[1])
    return {"frame_index": int(tokens[0]) - vocab.time(0),
            "class_index": -1 if cls == vocab.id(PAD) else _position(vocab.valid_ids("vggss"), cls)}


def s4_to_tokens(t: dict, vocab: Vocab = VOCAB) -> np.ndarray:
    return vocab.valid_ids("avs-s4")[[int(t["class_index"])]].astype(np.int32)


def s4_from_tokens(tokens: np.ndarray, vocab: Vocab = VOCAB) -> dict:
    return {"class_index": _position(vocab.valid_ids("avs-s4"), int(tokens[0]))}


def avss_to_tokens(t: dict, vocab: Vocab = VOCAB) -> np.ndarray:
    return _set_to_tokens("avss", t["classes_present"], vocab)


def avss_from_tokens(tokens: np.ndarray, vocab: Vocab = VOCAB) -> dict:
    return {"classes_present": _set_from_tokens("avss", tokens, vocab)}


def avqa_to_tokens(t: dict, vocab: Vocab = VOCAB, answers: list[str] = AVQA_ANSWERS) -> np.ndarray:
    return vocab.class_ids([answers[int(t["answer"])]])


def avqa_from_tokens(tokens: np.ndarray, vocab: Vocab = VOCAB, answers: list[str] = AVQA_ANSWERS) -> dict:
    return {"answer": _position(vocab.class_ids(answers), int(tokens[0]))}


SERIALISERS = {
    "ave": (ave_to_tokens, ave_from_tokens),
    "llp": (llp_to_tokens, llp_from_tokens),
    "llp-events": (llp_events_to_tokens, llp_events_from_tokens),
    "vggss": (vggss_to_tokens, vggss_from_tokens),
    "avs-s4": (s4_to_tokens, s4_from_tokens),
    "avss": (avss_to_tokens, avss_from_tokens),
    "music-avqa": (avqa_to_tokens, avqa_from_tokens),
}
