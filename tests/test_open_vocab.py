"""Open-vocabulary intents from WordNet, and a student that inherits the teacher's tokenizer and embeddings."""

from pathlib import Path

import pytest

from udrl import lexicon
from udrl.intents import FORMS, OCCASIONS, build_open_intents, frame_words, subject_words

# A miniature WordNet in the database format: "offset lex_filenum ss_type w_cnt (word lex_id)+ p_cnt | gloss"
NOUNS = {5: ["cat", "dog", "horse", "giraffe", "llama", "zebra", "beaver", "otter", "falcon", "parrot"],
         6: ["typewriter", "lantern", "teapot", "bicycle", "umbrella", "violin", "hammock", "kettle", "anchor",
             "compass", "snow_globe", "rocking_chair"],
         13: ["pancake", "waffle", "pretzel", "dumpling", "burrito", "croissant"],
         15: ["Paris", "Tokyo", "Lisbon", "Nairobi"],
         18: ["astronaut", "firefighter", "librarian", "Abraham_Lincoln"],
         20: ["sunflower", "cactus", "tulip", "fern"]}
ADJECTIVES = ["cozy", "giant", "golden", "tiny", "rusty", "happy"]


def _mini_wordnet(directory: Path) -> Path:
    offset = 1000
    with (directory / "data.noun").open("w") as fh:
        fh.write("  1 This software and database is being provided ...\n")
        for lex, words in NOUNS.items():
            for word in words:
                fh.write(f"{offset:08d} {lex:02d} n 01 {word} 0 000 | a thing\n")
                offset += 1
    with (directory / "data.adj").open("w") as fh:
        for word in ADJECTIVES:
            fh.write(f"{offset:08d} 00 a 01 {word} 0 000 | a quality\n")
            offset += 1
    # index files: "lemma pos synset_cnt p_cnt [ptr...] sense_cnt tagsense_cnt offsets"
    (directory / "index.adj").write_text("".join(f"{w} a 1 0 1 5 {offset:08d}\n" for w in ADJECTIVES))
    (directory / "index.noun").write_text("")
    (directory / "index.verb").write_text("")
    return directory


@pytest.fixture()
def mini_wordnet(tmp_path, monkeypatch):
    monkeypatch.setenv("UDRL_WORDNET", str(_mini_wordnet(tmp_path)))
    lexicon.nouns.cache_clear()
    lexicon.adjectives.cache_clear()
    yield
    lexicon.nouns.cache_clear()
    lexicon.adjectives.cache_clear()


def test_open_intents_hold_out_their_subject_words(mini_wordnet, monkeypatch):
    monkeypatch.setattr("udrl.intents.TEST_SHARE", 0.3)
    train, test, stats = build_open_intents(n_train=80, n_test=10, seed=1, exclude=["lost cat poster"])
    assert len(train) == 80 and 0 < len(test) <= 10 and not set(train) & set(test)
    train_words = {w for t in train + ["lost cat poster"] for w in lexicon.words(t)}
    occasions = {w for o in OCCASIONS for w in lexicon.words(o)}  # "festival": shared phrasing, not a subject
    for intent in test:  # no subject word of a test intent occurs in any training intent
        assert not (set(subject_words(intent)) - occasions) & train_words, intent
    assert "cat" not in {w for t in test for w in subject_words(t)}  # a word of the excluded file
    assert set(stats["forms_test"]) == set(FORMS)


def test_real_wordnet_gives_known_words():
    if not Path(lexicon.WORDNET_DIR, "data.noun").is_file():
        pytest.skip("Debian's wordnet-base is not installed (apt-get install wordnet-base)")
    nouns = {lemma.text for lemma in lexicon.nouns()}
    assert {"typewriter", "giraffe", "Eiffel Tower"} <= nouns and len(nouns) > 10_000
    assert "hesitation" not in lexicon.adjectives() and "golden" in lexicon.adjectives()


def test_missing_wordnet_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setenv("UDRL_WORDNET", str(tmp_path))
    lexicon.nouns.cache_clear()
    with pytest.raises(FileNotFoundError, match="apt-get install wordnet-base"):
        lexicon.nouns()
    lexicon.nouns.cache_clear()


def test_frame_words_are_not_subjects():
    assert subject_words("a llama wearing sunglasses instagram post") == ["llama", "sunglasses"]
    assert {"poster", "wearing", "visit"} <= frame_words()


def test_student_with_the_teachers_tokenizer_and_embeddings(tiny_corpus, tmp_path):
    import torch

    from udrl.student import load_student
    from udrl.student.transfer import projected_embeddings, teacher_embeddings, teacher_tokenizer
    from udrl.train import TrainConfig, train

    tokenizer = teacher_tokenizer()
    assert tokenizer.decode(tokenizer("a llama wearing sunglasses")["input_ids"]) == "a llama wearing sunglasses"
    assert teacher_embeddings().shape == (len(tokenizer), 576)
    out = tmp_path / "student"
    train(TrainConfig(corpus=str(tiny_corpus), out=str(out), state_dir=str(tmp_path / "state"), tokenizer="teacher",
                      init_embeddings="teacher", n_layer=1, n_embd=32, n_head=2, epochs=1, batch_size=16,
                      progress=False))
    student = load_student(out)
    assert len(student.tokenizer) > 49_152 and student.model.config.vocab_size == len(student.tokenizer)
    ids = student.tokenizer(" cat dog", add_special_tokens=False)["input_ids"]
    start = projected_embeddings(student.tokenizer, 32)
    cat, dog = torch.nn.functional.normalize(start[ids], dim=1)
    assert float(cat @ dog) > 0.3  # related words start close
    single = student.generate(["lost cat"], "headline", n=1, seed=0)[0][0]  # llama.cpp over the GGUF export
    batched = student.generate(["lost cat", "ski trip"], "headline", n=2, seed=0)  # PyTorch decoder
    assert single.tokens > 0 and all(o.tokens > 0 for g in batched for o in g)


def test_english_tokenizer_has_pieces_for_words_the_corpus_lacks():
    if not Path(lexicon.WORDNET_DIR, "data.noun").is_file():
        pytest.skip("Debian's wordnet-base is not installed (apt-get install wordnet-base)")
    from conftest import make_records
    from udrl.student.encoding import CommandEncoding
    from udrl.train import build_tokenizer

    records = make_records()
    encoding = CommandEncoding.fit(records, bins=4)
    corpus = [r["intent"] for r in records] + [r["output"] for r in records]
    narrow = build_tokenizer(corpus, encoding, 2000)
    broad = build_tokenizer(corpus + lexicon.english_text(), encoding, 2000)

    def pieces(tokenizer, text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    words = " vintage typewriter repair giraffe wearing sunglasses"
    assert pieces(broad, words) < 0.7 * pieces(narrow, words)  # 22 against 39 pieces when written
