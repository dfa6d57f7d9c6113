"""The guideline rules as pure functions (``shared/guidelines.py``)."""

from icdcoder.shared.guidelines import (
    combinations,
    describes_only_the_patient,
    documented_share,
    explains_symptom,
    is_definitive,
    is_examination_encounter,
    is_generic_disorder,
    is_generic_malformation,
    is_ill_defined,
    is_procedure_homonym,
    is_test_result_code,
    is_uncertain_behavior,
    localized,
    names_a_histology,
    names_a_malformation,
    names_a_visit,
    names_an_illness,
    names_test_or_procedure,
    path_documented_share,
    said_stems,
    says_something_is_wrong,
    states_a_blood_group,
    states_title,
    title_forms,
    trauma_wording,
    undocumented,
)


def test_a_title_is_stated_word_for_word_only() -> None:
    e11_9 = ["Type 2 diabetes mellitus without complications"]
    e11_8 = ["Type 2 diabetes mellitus with unspecified complications"]
    said = "Type 2 diabetes mellitus without complications"
    assert states_title(said, e11_9) and not states_title(said, e11_8)
    assert states_title("type 2 diabetes mellitus, without complications.", e11_9)
    assert not states_title("Type 2 diabetes mellitus", e11_9)  # less than the title
    assert not states_title("", e11_9)
    # non-essential words in parentheses and ", unspecified" may be left out
    assert states_title("Essential hypertension", ["Essential (primary) hypertension"])
    assert states_title("Hyperlipidemia", ["Hyperlipidemia, unspecified"])
    assert title_forms("Essential (primary) hypertension") == {
        "essential primary hypertension",
        "essential hypertension",
    }


def test_a_symptom_is_explained_by_a_diagnosis_of_its_system_or_sentence() -> None:
    # dyspnoea (R06, circulatory and respiratory symptoms) beside heart failure or COPD
    assert explains_symptom("R06.00", "I50.23", shared_sentence=False) is not None
    assert explains_symptom("R05.8", "J44.1", shared_sentence=False) is not None
    # not beside a diagnosis of another system, unless written in its sentence
    assert explains_symptom("R06.00", "E11.9", shared_sentence=True) is None
    assert (
        explains_symptom("R06.00", "E11.9", shared_sentence=True, criterion="sentence") is not None
    )
    assert explains_symptom("R06.00", "E11.9", shared_sentence=False, criterion="either") is None
    # both: of the system and in the sentence
    assert explains_symptom("R06.00", "I50.23", shared_sentence=False, criterion="both") is None
    assert explains_symptom("R06.00", "E11.9", shared_sentence=True, criterion="both") is None
    assert explains_symptom("R06.00", "I50.23", shared_sentence=True, criterion="both") is not None
    # general symptoms (R50-R69) have no system
    assert explains_symptom("R60.9", "I50.23", shared_sentence=False) is None
    # history codes, external causes and other symptoms explain nothing; off is off
    assert explains_symptom("R06.00", "Z87.891", shared_sentence=True, criterion="either") is None
    assert explains_symptom("R06.00", "R05.8", shared_sentence=True, criterion="either") is None
    assert explains_symptom("R06.00", "I50.23", shared_sentence=True, criterion="off") is None
    assert explains_symptom("J44.1", "I50.23", shared_sentence=True) is None  # not a symptom
    assert not is_definitive("W19.XXXA") and is_definitive("S72.001A")


def test_trauma_wording() -> None:
    assert trauma_wording("Radiographs showed a displaced fracture of the right femoral neck")
    assert trauma_wording("She tripped over a rug and fell")
    assert trauma_wording("paracetamol poisoning") and trauma_wording("postoperative wound")
    assert not trauma_wording("bilateral lower extremity edema")
    # organ "injuries" of disease are not trauma, a traumatic one is
    assert not trauma_wording("Acute kidney injury with oliguria")
    assert not trauma_wording("drug-induced liver injury")
    assert not trauma_wording("acute lung injury")
    assert trauma_wording("traumatic brain injury")
    assert trauma_wording("acute kidney injury after a fall")


def test_combination_codes_the_guidelines_presume() -> None:
    found = {c.code: c.parts for c in combinations(["I10", "I50.23", "E78.5"])}
    assert found == {"I11.0": ("I10", "I50.23")}
    found = {c.code: c.parts for c in combinations(["I10", "N18.30", "E11.9"])}
    assert found == {"I12.9": ("I10", "N18.30"), "E11.22": ("E11.9", "N18.30")}
    assert {c.code for c in combinations(["I10", "N18.6"])} == {"I12.0"}
    assert {c.code for c in combinations(["I10", "I50.9", "N18.4"])} == {"I13.0"}
    assert {c.code for c in combinations(["I10", "I50.9", "N18.5"])} == {"I13.2"}
    # one part alone, or the combination already coded: nothing proposed
    assert combinations(["I50.23", "E11.9"]) == []
    assert combinations(["I10", "I50.23"], {"I11.0": object()}) == []


def test_a_test_or_procedure_name() -> None:
    for name in ("chest X-ray", "Abdominal ultrasound", "normal brain CT scan", "Lumbar puncture"):
        assert names_test_or_procedure(name), name
    assert names_test_or_procedure("bone  scintigraphy.")
    for measured in ("Hemoglobin 9.8 g/dl", "hematocrit 35%", "hemoglobin of 10.3 g", "glucose"):
        assert names_test_or_procedure(measured), measured
    assert names_test_or_procedure("under general anesthesia")
    # its abbreviation after the name; a rate measured
    assert names_test_or_procedure("magnetic resonance imaging (MRI)")
    assert names_test_or_procedure("erythrocyte sedimentation rate")
    assert names_test_or_procedure("sedimentation rate 79 mm/h")
    assert names_test_or_procedure("thyroid hormones")
    assert names_test_or_procedure("cholesterol 125")
    for finding in (
        "fracture of the femur (S72)",  # no test before the brackets
        "chest X-ray showed a left lower lobe infiltrate",  # a result
        "chest pain",
        "Acute kidney injury",
        "the patient then underwent an abdominal ultrasound",  # more than four words before
        "hemoglobin 7.1 g/dl and severe anemia",  # a diagnosis after the value
    ):
        assert not names_test_or_procedure(finding), finding


def test_what_a_title_asks_for_beyond_the_documentation() -> None:
    said = "Type 2 diabetes mellitus, treated with metformin"
    assert undocumented("Type 2 diabetes mellitus with hyperglycemia", said) == ["hyperglycemia"]
    # absence clauses, "unspecified" and parenthesised words ask for nothing
    assert undocumented("Type 2 diabetes mellitus without complications", said) == []
    assert undocumented("Other asthma", "asthma") == ["other"]
    assert undocumented("Unspecified asthma, uncomplicated", "asthma") == []
    epilepsy = "Epilepsy, unspecified, not intractable, without status epilepticus"
    assert undocumented(epilepsy, "known epilepsy") == []
    assert undocumented("Essential (primary) hypertension", "hypertension") == ["essential"]


def test_the_share_of_a_title_a_note_documents() -> None:
    note = said_stems("Known type 2 diabetes; hyperglycaemia on admission. Other findings: none.")
    assert documented_share("Type 2 diabetes mellitus without complications", note) == 0.75
    # "hyperglycemia" and the note's "hyperglycaemia" share a stem; filler words count too
    assert documented_share("Type 2 diabetes mellitus with hyperglycemia", note) == 0.8
    assert documented_share("Other specified diabetes mellitus", note) == 0.5
    assert documented_share("Unspecified, uncomplicated", note) == 1.0  # asks for nothing


def test_a_bone_s_neck_or_head_is_the_bone_not_the_region() -> None:
    note = said_stems("Radiographs showed a displaced fracture of the right femoral neck.")
    # S12.9 is the neck region (the cervical spine): the femoral neck does not document it
    assert documented_share("Fracture of neck, unspecified", note) == 0.5
    assert undocumented("Fracture of neck, unspecified", "fracture of the femoral neck") == ["neck"]
    # S72.041's own "neck of right femur" asks for the femur, which "femoral neck" names
    s72 = "Displaced fracture of base of neck of right femur"
    assert undocumented(s72, "displaced fracture of the right femoral neck") == ["base"]
    assert undocumented("Fracture of head of left humerus", "left humeral head fracture") == []
    # the neck itself still documents the region
    assert undocumented("Fracture of neck, unspecified", "fracture of the neck") == []
    assert (
        documented_share(
            "Malignant neoplasm of head, face and neck",
            said_stems(
                "squamous cell carcinoma of the head and neck; malignant neoplasm of the face"
            ),
        )
        == 1.0
    )


def test_an_age_or_a_sex_is_not_a_diagnosis() -> None:
    assert describes_only_the_patient("30 years old")
    assert describes_only_the_patient("a 64-year-old male patient")
    assert describes_only_the_patient("We report the case of a 76-year-old man")
    assert describes_only_the_patient("At 36 years of age")
    assert describes_only_the_patient("until 1992 when he was 41 years old")
    assert describes_only_the_patient("six years old")
    assert not describes_only_the_patient("a 64-year-old male patient with gout")
    assert not describes_only_the_patient("frail 90-year-old woman")
    assert not describes_only_the_patient("")


def test_procedure_homonyms_and_test_results() -> None:
    assert is_procedure_homonym("R20.0", "Inguinal orchiectomy under spinal anesthesia")
    assert is_procedure_homonym("R20.0", "General anaesthesia with orotracheal intubation")
    assert is_procedure_homonym("R20.0", "seen by the anesthesiologist")
    assert not is_procedure_homonym("R20.0", "anesthesia of the left hand")
    # pain relief given is not the finding either
    assert is_procedure_homonym("R20.0", "bone pain requiring continuous analgesia")
    assert is_procedure_homonym("R20.0", "treated with analgesic radiotherapy")
    # magnetic resonance imaging is not R49's resonance disorder of the voice
    assert is_procedure_homonym("R49.9", "confirmed by magnetic resonance imaging")
    assert is_procedure_homonym("R49.8", "a brain MRI")
    assert not is_procedure_homonym("R49.0", "hoarseness and nasal resonance")
    assert not is_procedure_homonym("N50.89", "orchiectomy under spinal anesthesia")
    assert is_test_result_code("Z67.10") and not is_test_result_code("Z95.1")


def test_illness_unspecified_needs_someone_ill() -> None:
    assert is_ill_defined("R69") and is_ill_defined("r69") and not is_ill_defined("R68.89")
    assert names_an_illness("a rare disease") and names_an_illness("He was unwell")
    assert names_an_illness("the illness progressed") and names_an_illness("sick")
    assert not names_an_illness("64-year-old male patient")
    assert not names_an_illness("We decided") and not names_an_illness("billing")


def test_an_encounter_for_examination_needs_a_visit_made_for_one() -> None:
    assert is_examination_encounter("Z00.00") and is_examination_encounter("z12.31")
    assert not is_examination_encounter("Z87.891") and not is_examination_encounter("Z14.1")
    assert names_a_visit("She came for her annual check-up")
    assert names_a_visit("Routine screening mammography was normal")
    assert not names_a_visit("Physical examination showed an apyretic patient")
    assert not names_a_visit("Preoperative staging was completed with chest X-ray")


def test_an_unspecified_disorder_of_an_organ_needs_something_wrong() -> None:
    assert is_generic_disorder("M89.9", "Disorder of bone, unspecified")
    assert is_generic_disorder("K76.9", "Liver disease, unspecified")
    assert is_generic_disorder("K68.9", "Other disorders of retroperitoneum")
    assert is_generic_disorder("D68.9", "Coagulation defect, unspecified")
    assert not says_something_is_wrong("coagulation") and says_something_is_wrong("a defect")
    # named by their kind or organism, or not unspecified: left be
    assert not is_generic_disorder("F41.9", "Anxiety disorder, unspecified")
    assert not is_generic_disorder("B25.9", "Cytomegaloviral disease, unspecified")
    assert not is_generic_disorder(
        "B96.20", "Unspecified Escherichia coli [E. coli] as the cause of diseases classified"
    )
    assert not is_generic_disorder("K35.80", "Unspecified acute appendicitis")
    assert not is_generic_disorder("K76.0", "Fatty (change of) liver, not elsewhere classified")
    for wrong in ("multiple liver lesions", "hepatitis", "abnormal bone", "liver disease"):
        assert says_something_is_wrong(wrong), wrong
    for organ in ("Her liver", "Bone densitometry", "the tongue", "respiratory movements"):
        assert not says_something_is_wrong(organ), organ


def test_uncertain_behavior_is_a_histologists_finding() -> None:
    assert is_uncertain_behavior("D40.10") and is_uncertain_behavior("D44.4")
    assert not is_uncertain_behavior("D49.59") and not is_uncertain_behavior("C62.90")
    for histology in ("borderline ovarian tumor", "Leydig cell tumor", "craniopharyngioma"):
        assert names_a_histology(histology), histology
    for bare in ("a tumor of 2-3cm in the left testicle", "an 8 cm mass in the left testicle"):
        assert not names_a_histology(bare), bare


def test_lymphadenopathy_at_a_named_site_is_localized() -> None:
    for site in ("Bilateral inguinal lymphadenopathy", "supraclavicular lymphadenopathy"):
        assert localized("R59.1", site) == "R59.0", site
    assert localized("R59.1", "lymphadenopathy") is None  # "Lymphadenopathy NOS": R59.1
    assert localized("R59.1", "generalized cervical and axillary lymphadenopathy") is None
    assert localized("R59.9", "inguinal adenopathy") is None  # only the generalized code moves


def test_a_blood_group_is_stated_in_capitals_or_beside_group_or_rh() -> None:
    for group in ("blood group O, Rh positive", "type A blood", "AB+", "Rh-negative mother"):
        assert states_a_blood_group(group), group
    for other in ("Blood count; Blood biochemistry", "a positive Mantoux test", "group 2 nodes"):
        assert not states_a_blood_group(other), other


def test_a_malformation_named_by_its_organ_needs_one_said() -> None:
    assert is_generic_malformation("Congenital malformation, unspecified")
    assert is_generic_malformation("Other specified congenital malformations of kidney")
    assert not is_generic_malformation("Down syndrome, unspecified")
    for said in ("seminal vesicle agenesis", "venous malformations", "congenital absence"):
        assert names_a_malformation(said), said
    for tissue in ("preserved urothelium without dysplasia", "penile deformity", "a defect"):
        assert not names_a_malformation(tissue), tissue


def test_an_index_path_asks_for_its_main_term_once() -> None:
    stated = said_stems("He has a hiatal hernia and hypertension.")
    assert path_documented_share("Hernia, hernial, hiatal", stated) == 1.0
    assert documented_share("Hernia, hernial, hiatal", stated) == 2 / 3
    # "hypertrophy" is another word, not a variant of "hypertension"
    assert path_documented_share("Hypertension, hypertensive, hypertrophy", stated) == 0.5
    assert path_documented_share("Anemia, anemic, in chronic kidney disease", stated) == 0.0
