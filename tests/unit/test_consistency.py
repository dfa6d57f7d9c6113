from icdcoder.shared.consistency import NoteFacts, code_sex, inconsistency, read_facts


def test_reads_the_patients_sex_from_the_first_word_naming_one() -> None:
    assert read_facts("A 64-year-old man with chest pain; his wife drove him.").sex == "male"
    assert read_facts("A 30-year-old woman; her husband, a 32-year-old man, is well.").sex == (
        "female"
    )
    # pronouns are not read: a machine translation guessed this one
    assert read_facts("A 38-year-old male with fever. She was on levofloxacin.").sex == "male"
    assert read_facts("She was on levofloxacin for fever.").sex is None
    assert read_facts("Manifest hypertension in the mandible region.").sex is None


def test_reads_whether_the_note_mentions_a_pregnancy() -> None:
    assert read_facts("Primiparous woman at 32 weeks of gestation.").pregnancy
    assert read_facts("Urinary tract infection after cesarean section.").pregnancy
    assert not read_facts("An 84-year-old woman with a urinary tract infection.").pregnancy


def test_code_sex_follows_the_category_ranges() -> None:
    assert code_sex("N40.0") == "male" and code_sex("C61") == "male"
    assert code_sex("N83.20") == "female" and code_sex("O86.20") == "female"
    assert code_sex("Z3A.32") == "female" and code_sex("C50.911") is None
    assert code_sex("N39.0") is None


def test_inconsistency_names_the_mismatch() -> None:
    old_woman = NoteFacts(sex="female", pregnancy=False)
    assert inconsistency("O86.20", old_woman) == (
        "a pregnancy code, and the note mentions no pregnancy, delivery or puerperium"
    )
    assert inconsistency("N40.0", old_woman) == (
        "a code for male patients, and the note describes a female patient"
    )
    assert inconsistency("N39.0", old_woman) is None
    assert inconsistency("O86.20", NoteFacts(sex="female", pregnancy=True)) is None
    # unknown sex: nothing is said against a sex-specific code
    assert inconsistency("N40.0", NoteFacts(sex=None, pregnancy=False)) is None
