"""Named-concept definitions (coach.concepts): which "full name (ABBR)" pairs are read as definitions."""
from coach.concepts import absent_concept, definitions


def names(question: str) -> list[str]:
    return [str(d) for d in definitions(question)]


def test_a_full_name_whose_initials_spell_the_abbreviation_is_a_definition():
    assert names("Where are conditional random fields (CRFs) used?") == ["conditional random fields (CRFs)"]
    assert names("Is the Gated Recurrent Unit (GRU) faster?") == ["Gated Recurrent Unit (GRU)"]


def test_hyphens_split_words_and_small_words_may_be_skipped():
    assert names("How does Low-Rank Adaptation (LoRA) save memory?") == ["Low Rank Adaptation (LoRA)"]
    assert names("why does Chain-of-Thought (CoT) help") == ["Chain of Thought (CoT)"]
    assert names("a Mixture of Experts (MoE) layer") == ["Mixture of Experts (MoE)"]


def test_no_definition_without_matching_initials_or_capitals():
    assert names("Explain random hashing (LHS) tricks") == []      # initials spell "rh", not "lhs"
    assert names("a model (GPT-4) and a tool (grep)") == []
    assert names("what is a VAE") == []                               # a bare abbreviation is never enough


class FakeIndex:
    """Two items: a bank passage on GRUs and an uploaded one on CRFs."""
    fields = {"library": ["bank", "docs"]}
    terms = [{"gate", "recurr", "unit", "gru"}, {"condit", "random", "field"}]

    @staticmethod
    def tokenize(texts):
        stems = {"gated": "gate", "recurrent": "recurr", "conditional": "condit", "fields": "field"}
        return [[stems.get(w, w) for w in t.lower().replace("-", " ").split()] for t in texts]

    def postings(self, term):
        return [i for i, terms in enumerate(self.terms) if term in terms]


def test_a_concept_is_absent_when_neither_its_abbreviation_nor_its_full_name_is_in_the_library():
    index = FakeIndex()
    question = "Where are conditional random fields (CRFs) used?"
    assert str(absent_concept(question, [index], "bank")) == "conditional random fields (CRFs)"
    assert absent_concept(question, [index], "docs") is None            # the upload names all its words
    assert absent_concept("Is the Gated Recurrent Unit (GRU) faster?", [index], "bank") is None
    assert absent_concept("Is the Grumpy Recurrent Unit (GRU) faster?", [index], "bank") is None  # abbreviation known
