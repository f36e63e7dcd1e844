"""Design intents: what people type when they need a design, built from per-kind subjects and formats.

Train and test intents come from disjoint subjects, and a test intent whose embedding is too close to any
train intent (cosine >= ``NEAR_DUPLICATE``) is dropped, so the test split measures generalisation.
"""

from __future__ import annotations

import random
import re
from functools import lru_cache
from pathlib import Path

import numpy as np

from udrl.config import IntentsConfig

NEAR_DUPLICATE = 0.85

# kind -> (subjects, formats). An intent is a subject alone, or a subject with a format or a modifier.
KINDS: dict[str, tuple[list[str], list[str]]] = {
    "events": (
        ["summer pool party", "kids birthday party", "30th birthday bash", "wedding reception",
         "baby shower", "graduation party", "retirement dinner", "block party", "masquerade ball",
         "karaoke night", "trivia night", "murder mystery dinner", "bridal shower", "gender reveal party",
         "high school reunion", "company picnic", "engagement party", "housewarming party", "game night",
         "open mic night", "silent disco", "garden party", "beach bonfire", "talent show", "charity gala",
         "wine tasting evening", "rooftop party", "dance recital", "quinceanera", "anniversary dinner",
         "costume party", "neighborhood potluck", "drive-in movie night", "sweet sixteen party"],
        ["invitation", "poster", "flyer", "save the date card", "instagram post", "event banner",
         "ticket design", "facebook event cover"],
    ),
    "retail": (
        ["holiday sale", "summer clearance sale", "black friday deals", "spring shoe sale",
         "buy one get one free offer", "boutique grand opening", "back to school sale", "flash sale",
         "closing down sale", "new arrivals", "loyalty card program", "free shipping weekend",
         "thrift store fundraiser", "furniture store sale", "jewelry store promotion", "bookstore sale",
         "sneaker drop", "electronics discount", "garden center sale", "toy store opening",
         "bridal boutique", "vintage clothing store", "pop-up shop", "gift card promotion",
         "end of season sale", "cyber monday offer", "hardware store deals", "florist discount",
         "eyewear store opening", "outlet mall weekend", "kitchenware sale", "pet store sale"],
        ["banner", "poster", "flyer", "instagram story", "email header", "shop window sign",
         "web banner", "discount coupon"],
    ),
    "food": (
        ["bakery grand opening", "pizza delivery", "vegan cafe", "taco tuesday", "sushi restaurant",
         "coffee shop loyalty card", "food truck festival", "farmers market", "craft beer tasting",
         "brunch special", "ice cream parlor", "barbecue cookout", "wine bar happy hour",
         "italian restaurant menu", "smoothie bar", "chili cook-off", "donut shop", "ramen pop-up",
         "bubble tea shop", "cupcake delivery", "thai street food", "seafood festival",
         "cooking class", "pancake breakfast fundraiser", "cheese shop", "organic juice bar",
         "burger joint", "indian takeaway", "chocolate tasting", "dim sum brunch", "gluten free bakery",
         "steakhouse dinner special"],
        ["menu", "poster", "flyer", "instagram post", "logo", "storefront sign", "social media ad",
         "table tent card"],
    ),
    "nature": (
        ["national park hiking trip", "tree planting day", "beach cleanup", "bird watching walk",
         "wildflower meadow", "autumn leaves festival", "mountain camping weekend", "earth day rally",
         "community garden", "butterfly sanctuary", "ocean conservation", "recycling drive",
         "river kayaking tour", "stargazing night", "botanical garden tour", "forest trail run",
         "save the bees campaign", "waterfall hike", "desert sunrise tour", "wildlife photography workshop",
         "lake fishing derby", "composting workshop", "spring blossom walk", "coral reef awareness",
         "snowshoe adventure", "nature journaling class", "pumpkin patch visit", "whale watching cruise",
         "orchard apple picking", "rainforest fundraiser"],
        ["poster", "flyer", "instagram post", "banner", "brochure cover", "postcard",
         "volunteer signup sheet", "website hero image"],
    ),
    "education": (
        ["math tutoring", "summer reading program", "science fair", "coding bootcamp", "language exchange",
         "college open day", "kindergarten enrollment", "spelling bee", "chess club", "robotics club",
         "art class for kids", "online course launch", "study group", "library book sale",
         "history lecture", "piano lessons", "parent teacher night", "scholarship announcement",
         "graduation ceremony", "homework help center", "debate tournament", "stem camp",
         "adult literacy program", "photography course", "public speaking workshop", "driving school",
         "school fundraiser", "university research symposium", "preschool open house", "exam prep course"],
        ["poster", "flyer", "presentation cover", "certificate", "social media post", "brochure",
         "banner", "newsletter header"],
    ),
    "tech": (
        ["app launch", "cybersecurity webinar", "hackathon", "smartphone repair shop", "ai conference",
         "startup pitch night", "saas product update", "web design agency", "podcast episode",
         "gaming tournament", "tech meetup", "cloud hosting promotion", "new laptop release",
         "data science bootcamp", "vr arcade", "it support services", "crypto wallet app",
         "electric scooter rental", "smart home devices", "3d printing workshop", "developer conference",
         "robot vacuum launch", "wifi hotspot", "youtube tech channel", "fitness tracker launch",
         "computer recycling event", "drone racing league", "online privacy guide", "esports team",
         "open source meetup"],
        ["banner", "landing page hero", "poster", "youtube thumbnail", "linkedin post", "app store screenshot",
         "logo", "email header"],
    ),
    "holidays": (
        ["christmas market", "halloween party", "thanksgiving dinner", "new year's eve countdown",
         "valentine's day special", "easter egg hunt", "fourth of july fireworks", "diwali celebration",
         "lunar new year festival", "hanukkah gathering", "st patrick's day pub crawl",
         "mother's day brunch", "father's day sale", "ramadan iftar", "cinco de mayo fiesta",
         "mardi gras parade", "day of the dead altar", "oktoberfest", "winter solstice",
         "christmas cookie swap", "holiday toy drive", "ugly sweater party", "spring equinox festival",
         "labor day barbecue", "memorial day ceremony", "kwanzaa celebration", "holi color festival",
         "advent calendar", "boxing day sale", "bonfire night"],
        ["card", "poster", "invitation", "instagram post", "flyer", "banner", "gift tag", "menu"],
    ),
    "wellness": (
        ["yoga retreat in the mountains", "meditation class", "mental health awareness", "spa day",
         "pilates studio", "nutrition coaching", "sleep hygiene tips", "stress relief workshop",
         "massage therapy", "breathwork session", "healthy meal prep", "sound bath", "therapy practice",
         "walking club", "hydration challenge", "reiki healing", "self care sunday", "dental clinic",
         "flu shot clinic", "blood donation drive", "physiotherapy clinic", "skincare routine",
         "mindfulness app", "senior fitness class", "prenatal yoga", "detox retreat", "wellness fair",
         "acupuncture clinic", "quit smoking campaign", "eye exam reminder"],
        ["poster", "flyer", "instagram post", "brochure", "banner", "infographic", "appointment card",
         "website header"],
    ),
    "pets": (
        ["lost cat", "lost dog", "dog adoption day", "cat cafe", "pet grooming salon", "puppy training class",
         "animal shelter fundraiser", "dog walking service", "veterinary clinic", "pet photography session",
         "found parrot", "horse riding lessons", "aquarium store", "pet sitting", "dog park opening",
         "kitten foster program", "bird seed sale", "pet food delivery", "rabbit rescue", "dog birthday party",
         "reptile expo", "pet costume contest", "cat vaccination clinic", "guide dog charity",
         "doggy daycare", "pet insurance", "hamster care guide", "dog friendly cafe",
         "spay and neuter campaign", "horse show"],
        ["poster", "flyer", "instagram post", "logo", "business card", "banner", "sign", "postcard"],
    ),
    "travel": (
        ["paris weekend getaway", "beach resort", "road trip across the usa", "ski holiday", "cruise deal",
         "backpacking southeast asia", "travel agency", "safari adventure", "hotel spa package",
         "camping gear rental", "japan cherry blossom tour", "city bike tour", "honeymoon package",
         "airline flash sale", "island hopping greece", "northern lights tour", "glamping site",
         "train journey through the alps", "family theme park trip", "desert camel trek",
         "wine country tour", "surf camp", "hostel opening", "scuba diving course", "london bus tour",
         "tropical villa rental", "hot air balloon ride", "travel vlog", "museum pass", "cabin in the woods"],
        ["poster", "instagram post", "brochure cover", "banner", "postcard", "flyer", "email header",
         "youtube thumbnail"],
    ),
    "real_estate": (
        ["open house", "luxury condo for sale", "apartment for rent", "home staging service",
         "real estate agent", "new housing development", "office space for lease", "mortgage rates",
         "first time home buyer seminar", "beach house rental", "property management company",
         "just sold", "moving company", "interior design studio", "home renovation", "roofing contractor",
         "landscaping service", "storage units", "student housing", "coworking space",
         "vacation cabin listing", "home inspection", "house cleaning service", "kitchen remodel",
         "solar panel installation", "tiny house", "farmhouse for sale", "plumbing service",
         "painting contractor", "pool installation"],
        ["flyer", "yard sign", "instagram post", "brochure", "business card", "banner", "postcard",
         "listing header"],
    ),
    "arts_music": (
        ["jazz concert", "rock band gig", "art gallery opening", "poetry reading", "film festival",
         "theater play", "choir performance", "pottery workshop", "street art festival",
         "classical music recital", "indie album release", "dj night", "photography exhibition",
         "craft fair", "ballet performance", "music festival", "comedy show", "book launch",
         "painting class", "symphony orchestra", "hip hop showcase", "folk music evening",
         "sculpture exhibition", "improv theater", "vinyl record fair", "musical theatre auditions",
         "knitting circle", "calligraphy workshop", "opera night", "tattoo convention"],
        ["poster", "flyer", "album cover", "ticket", "instagram post", "banner", "program cover",
         "invitation"],
    ),
    "sports": (
        ["marathon", "soccer tryouts", "basketball tournament", "gym membership promotion",
         "swimming lessons", "tennis camp", "charity fun run", "boxing class", "cycling race",
         "golf tournament", "little league baseball", "crossfit challenge", "rock climbing gym",
         "martial arts school", "volleyball league", "skateboarding contest", "ski race",
         "hockey season opener", "personal trainer", "zumba class", "surf competition",
         "fantasy football league", "bowling night", "triathlon", "rugby match", "ultimate frisbee",
         "horse racing day", "cheerleading camp", "table tennis club", "fishing tournament"],
        ["poster", "flyer", "banner", "instagram post", "jersey design", "logo", "ticket",
         "social media ad"],
    ),
    "community": (
        ["food bank donation drive", "volunteer recruitment", "town hall meeting", "church bake sale",
         "neighborhood watch", "clothing swap", "blood drive", "homeless shelter fundraiser",
         "community cleanup", "voter registration", "library story time", "senior center bingo",
         "refugee welcome event", "literacy volunteers", "animal rescue volunteers", "park renovation",
         "coat drive", "charity auction", "community choir", "yard sale", "scout troop recruitment",
         "neighborhood festival", "mentoring program", "disaster relief fund", "free health screening",
         "community radio", "repair cafe", "book club", "soup kitchen", "local election"],
        ["poster", "flyer", "banner", "instagram post", "newsletter header", "sign", "donation appeal",
         "facebook post"],
    ),
    "business": (
        ["law firm", "accounting services", "marketing agency", "annual report", "job fair",
         "hiring software engineers", "consulting firm", "insurance agency", "financial planning seminar",
         "small business expo", "networking breakfast", "product launch", "corporate retreat",
         "quarterly results", "employee of the month", "customer appreciation day", "webinar on leadership",
         "freelance designer", "print shop", "courier service", "cleaning company", "car dealership",
         "auto repair shop", "trade show booth", "investor pitch deck", "brand refresh", "tax preparation",
         "virtual assistant services", "recruitment agency", "notary public"],
        ["business card", "logo", "flyer", "linkedin banner", "presentation cover", "poster",
         "email signature", "brochure"],
    ),
    "family": (
        ["baby announcement", "family reunion", "kids summer camp", "daycare center", "family photo session",
         "toddler music class", "school lunch menu", "father daughter dance", "birth announcement",
         "first communion", "bar mitzvah", "family movie night", "playground opening", "babysitting service",
         "kids craft workshop", "baby first birthday", "twins birthday", "grandparents day",
         "family fun run", "kids yoga", "homeschool co-op", "bedtime story app", "children's book fair",
         "lemonade stand", "kids science show", "parenting workshop", "bouncy castle rental",
         "christening", "kids soccer camp", "puppet show"],
        ["invitation", "poster", "flyer", "card", "instagram post", "banner", "announcement card",
         "sign"],
    ),
    "fashion_beauty": (
        ["hair salon", "nail studio", "barber shop", "bridal makeup artist", "clothing brand launch",
         "streetwear drop", "fashion show", "sustainable fashion", "perfume launch", "lipstick collection",
         "tailoring service", "sneaker brand", "eyelash extensions", "tattoo studio", "jewelry collection",
         "handbag sale", "men's grooming kit", "vintage fashion market", "swimwear collection",
         "hat shop", "organic skincare brand", "beauty influencer", "wedding dress boutique",
         "eyebrow threading", "hair color special", "spa pedicure", "runway casting call",
         "knitwear collection", "sunglasses brand", "modest fashion line"],
        ["instagram post", "poster", "logo", "banner", "lookbook cover", "flyer", "price list",
         "business card"],
    ),
}

MODIFIERS = [
    "with a minimalist look", "in retro style", "in pastel colors", "for a small town", "with a bold look",
    "for social media", "in watercolor style", "with a modern feel", "for teenagers", "for seniors",
    "in black and white", "with a playful vibe", "for a luxury brand", "with neon colors",
    "in a rustic style", "for this weekend",
]


def _candidates(subjects: list[str], formats: list[str], rng: random.Random) -> list[str]:
    out = []
    for subject in subjects:
        out.append(subject)
        out.extend(f"{subject} {fmt}" for fmt in formats)
        out.extend(f"{subject} {fmt} {mod}" for fmt in rng.sample(formats, 2) for mod in [rng.choice(MODIFIERS)])
    return out


def build_intents(n_train: int = IntentsConfig.train, n_test: int = IntentsConfig.test, test_share: float = 0.18,
                  seed: int = IntentsConfig.seed) -> tuple[list[str], list[str], dict]:
    """Train and test intents, balanced over kinds, test subjects disjoint and no near-duplicates."""
    from udrl.rewards import embed

    rng = random.Random(seed)
    train_pool: dict[str, list[str]] = {}
    test_pool: dict[str, list[str]] = {}
    for kind, (subjects, formats) in KINDS.items():
        subjects = sorted(subjects)
        rng.shuffle(subjects)
        k = max(3, round(len(subjects) * test_share))
        test_pool[kind] = _candidates(subjects[:k], formats, rng)
        train_pool[kind] = _candidates(subjects[k:], formats, rng)

    def balanced(pool: dict[str, list[str]], total: int) -> list[str]:
        picked: list[str] = []
        per_kind = {kind: rng.sample(items, len(items)) for kind, items in pool.items()}
        while len(picked) < total and any(per_kind.values()):
            for items in per_kind.values():
                if items and len(picked) < total:
                    picked.append(items.pop())
        return picked

    train = balanced(train_pool, n_train)
    test_candidates = balanced(test_pool, sum(map(len, test_pool.values())))
    train_vecs = embed(train)
    sims = embed(test_candidates) @ train_vecs.T
    nearest = sims.max(axis=1)
    kept = [t for t, s in zip(test_candidates, nearest) if s < NEAR_DUPLICATE]
    test = balanced({"all": kept}, n_test) if len(kept) > n_test else kept
    stats = {
        "threshold": NEAR_DUPLICATE,
        "test_candidates": len(test_candidates),
        "dropped_near_duplicates": int((nearest >= NEAR_DUPLICATE).sum()),
        "max_test_train_similarity": float(np.max(embed(test) @ train_vecs.T)),
        "kinds": len(KINDS),
    }
    return sorted(train), sorted(test), stats


def make_intents(cfg: IntentsConfig) -> dict:
    """The ``intents`` stage: template intents, or with ``cfg.open`` open-vocabulary ones, written to ``cfg.out``."""
    if cfg.open:
        return write_open_intents(cfg.out, exclude_file=cfg.exclude, n_train=cfg.train, n_test=cfg.test,
                                  seed=cfg.seed)
    return write_intents(cfg.out, n_train=cfg.train, n_test=cfg.test, seed=cfg.seed)


def write_intents(directory: str | Path, **kwargs) -> dict:
    """Write ``train.txt`` and ``test.txt`` (one intent a line) and return the build statistics."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    train, test, stats = build_intents(**kwargs)
    (directory / "train.txt").write_text("\n".join(train) + "\n", encoding="utf-8")
    (directory / "test.txt").write_text("\n".join(test) + "\n", encoding="utf-8")
    return {"train": len(train), "test": len(test), **stats}


# -- open vocabulary: intents over any English noun or name, from WordNet --------------------------------------

OCCASIONS = ["shop grand opening", "festival", "workshop", "repair service", "sale", "club", "museum exhibit",
             "themed birthday party", "appreciation day", "fan meetup", "photo contest", "awareness week",
             "tour", "class", "delivery service", "market", "showcase", "rental", "subscription box",
             "fundraiser"]
RELATIONS = ["wearing", "holding", "riding", "eating", "reading", "next to", "in front of", "on top of",
             "surrounded by", "playing with", "carrying", "sitting on", "made of", "painting", "hiding behind"]
ACTORS = ("animal", "person")
PROPS = ("object", "food", "plant")
FORMATS = sorted({fmt for _, formats in KINDS.values() for fmt in formats})
# the share of each phrasing among open-vocabulary intents
FORMS = {"subject": 0.25, "subject_format": 0.2, "occasion": 0.25, "scene": 0.2, "place": 0.1}
TEST_SHARE = 0.15  # head words held out for the open-vocabulary test set


def _article(phrase: str) -> str:
    return ("an " if phrase[:1].lower() in "aeiou" else "a ") + phrase


def _held_out(head: str, share: float) -> bool:
    """Whether a head word belongs to the test partition (stable across runs and machines)."""
    import hashlib

    return int(hashlib.sha1(head.lower().encode()).hexdigest()[:8], 16) % 1000 < share * 1000


def _head(lemma_text: str) -> str:
    return lemma_text.lower().replace("-", " ").split()[-1]


def _open_intent(form: str, pools: dict[str, list], adjectives: list[str], rng: random.Random) -> tuple[str, list[str]]:
    """One intent of ``form`` and the lemmas (subject words) it was built from."""
    def pick(*kinds: str):
        stocked = [k for k in kinds if pools[k]] or [k for k in pools if pools[k]]
        return rng.choice(pools[rng.choice(stocked)])

    def name(lemma) -> str:
        return lemma.text if lemma.proper else lemma.text.lower()

    adjective = rng.choice(adjectives) if adjectives and rng.random() < 0.25 else None
    places = [lemma for lemma in pools["place"] + pools["nature"] if lemma.proper]
    if form == "place" and not places:
        form = "subject"
    if form == "subject":
        noun = pick("object", "animal", "food", "plant", "person", "nature", "place")
        text = name(noun) if adjective is None or noun.proper else f"{adjective} {name(noun)}"
        if not noun.proper and rng.random() < 0.4:
            text = _article(text)
        return text, [noun.text] + ([adjective] if adjective and not noun.proper else [])
    if form == "subject_format":
        noun = pick("object", "animal", "food", "plant", "person", "nature")
        subject = name(noun) if adjective is None or noun.proper else f"{adjective} {name(noun)}"
        return f"{subject} {rng.choice(FORMATS)}", [noun.text] + ([adjective] if adjective and not noun.proper else [])
    if form == "occasion":
        noun = pick("object", "animal", "food", "plant")
        subject = name(noun) if adjective is None else f"{adjective} {name(noun)}"
        text = f"{subject} {rng.choice(OCCASIONS)}"
        if rng.random() < 0.4:
            text += f" {rng.choice(FORMATS)}"
        return text, [noun.text] + ([adjective] if adjective else [])
    if form == "scene":
        actor, prop = pick(*ACTORS), pick(*PROPS)
        relation = rng.choice(RELATIONS)
        left = name(actor) if actor.proper else _article(name(actor))
        right = name(prop) if prop.proper or relation == "made of" else _article(name(prop))
        return f"{left} {relation} {right}", [actor.text, prop.text]
    place = rng.choice(places)
    return rng.choice(PLACE_FRAMES).format(p=place.text), [place.text]


def build_open_intents(n_train: int, n_test: int, seed: int,
                       exclude: list[str] = ()) -> tuple[list[str], list[str], dict]:
    """Open-vocabulary intents: five phrasings over WordNet's nouns (objects, animals, foods, plants, people,
    places, landmarks) and adjectives. Test intents take head words held out from training, and any test
    intent sharing a subject word with a training intent (or with ``exclude``) is dropped."""
    from udrl import lexicon

    rng = random.Random(seed)
    adjectives = list(lexicon.adjectives())
    nouns = lexicon.nouns()
    pools = {"train": {}, "test": {}}
    for lemma in nouns:
        part = "test" if _held_out(_head(lemma.text), TEST_SHARE) else "train"
        pools[part].setdefault(lemma.kind, []).append(lemma)
    for part in pools:
        for kind in lexicon.NOUN_KINDS.values():
            pools[part].setdefault(kind, [])
    adjective_parts = {"train": [a for a in adjectives if not _held_out(a, TEST_SHARE)],
                       "test": [a for a in adjectives if _held_out(a, TEST_SHARE)]}

    def draw(part: str, n: int) -> list[tuple[str, list[str], str]]:
        forms = rng.choices(list(FORMS), weights=list(FORMS.values()), k=n * 2)
        seen, out = set(), []
        for form in forms:
            text, subjects = _open_intent(form, pools[part], adjective_parts[part], rng)
            if text.lower() not in seen:
                seen.add(text.lower())
                out.append((text, subjects, form))
            if len(out) == n:
                break
        return out

    train = draw("train", n_train)
    train_words = {w for text, _, _ in train for w in lexicon.words(text)}
    train_words |= {w for text in exclude for w in lexicon.words(text)}
    frame = frame_words() | {w for phrase in OCCASIONS for w in lexicon.words(phrase)}
    candidates = draw("test", n_test * 10)
    disjoint = [(t, s, f) for t, s, f in candidates if not (set(lexicon.words(" ".join(s))) - frame) & train_words]
    test = disjoint[:n_test]
    stats = {"train": len(train), "test": len(test), "test_candidates": len(candidates),
             "dropped_sharing_a_word": len(candidates) - len(disjoint),
             "forms_test": {f: sum(1 for _, _, g in test if g == f) for f in FORMS},
             "nouns": len(nouns), "adjectives": len(adjectives), "seed": seed}
    return [t for t, _, _ in train], [t for t, _, _ in test], stats


def training_nouns() -> list[str]:
    """WordNet nouns and names sharing no word with a noun of the test partition (as they would be typed: common
    nouns lower-case), for subject-swap augmentation: none names a subject of the open-vocabulary test set."""
    from udrl import lexicon

    held_out = [lemma for lemma in lexicon.nouns() if _held_out(_head(lemma.text), TEST_SHARE)]
    test_words = {w for lemma in held_out for w in lexicon.words(lemma.text)}
    return sorted({lemma.text if lemma.proper else lemma.text.lower() for lemma in lexicon.nouns()
                   if not set(lexicon.words(lemma.text)) & test_words})


def write_open_intents(directory: str | Path, exclude_file: str | Path | None = None, **kwargs) -> dict:
    """Write ``train.txt`` and ``test.txt`` of open-vocabulary intents, in a seeded random order (so that
    ``evaluate --limit N`` reads a random sample)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    exclude = Path(exclude_file).read_text(encoding="utf-8").splitlines() if exclude_file else []
    train, test, stats = build_open_intents(exclude=exclude, **kwargs)
    (directory / "train.txt").write_text("\n".join(train) + "\n", encoding="utf-8")
    (directory / "test.txt").write_text("\n".join(test) + "\n", encoding="utf-8")
    return stats


# -- subject and frame ---------------------------------------------------------------------------------

FUNCTION_WORDS = frozenset(
    "a an the and or for of to in on at by with from this that my our your their its is are be new day "
    "night st".split())
PLACE_FRAMES = ["{p}", "{p} travel poster", "weekend in {p}", "{p} postcard", "visit {p}", "{p} city guide cover",
                "{p} food tour"]
_WORD = re.compile(r"[a-z]+")


@lru_cache(maxsize=1)
def frame_words() -> frozenset[str]:
    """Words of formats, modifiers, relations and function words: what the design is, not what it is about."""
    phrases = ([fmt for _, formats in KINDS.values() for fmt in formats] + MODIFIERS + RELATIONS
               + [frame.format(p="") for frame in PLACE_FRAMES])
    return frozenset(w for p in phrases for w in _WORD.findall(p.lower())) | FUNCTION_WORDS


def subject_words(intent: str) -> list[str]:
    """The intent's words that name its subject, in order, without repeats."""
    kept = frame_words()
    return list(dict.fromkeys(w for w in _WORD.findall(intent.lower()) if w not in kept and len(w) > 2))
