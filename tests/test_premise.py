"""False premises: a question built on a claim the bank contradicts is answered by correcting it first.

Every question here was written for this test (none comes from the real-question dev set). Each wrong
premise names the entry that contradicts it; each true premise must pass without a correction, so the
check cannot pass by correcting everything.
"""
from __future__ import annotations

import pytest

from coach.text import citations_of, split_sentences

# (question, the entry that says otherwise)
WRONG_PREMISES = [
    ("Since batch normalization relies on the current batch's statistics when it predicts, why do my "
     "single-image predictions wobble?", "p1-batch-norm"),
    ("Given that a lone perceptron can learn XOR if you train it long enough, how many epochs should that take?",
     "p1-perceptron-xor"),
    ("Why does ReLU saturate for large positive inputs just like the sigmoid does?", "p1-activation-comparison"),
    ("Since warmup starts with a high learning rate and lowers it over the first steps, what peak should I pick?",
     "p1-lr-schedules-warmup"),
    ("Given that Adam uses one global step size shared by every parameter, what makes it adaptive?",
     "p1-sgd-momentum-adam"),
    ("Because momentum amplifies oscillations by adding up past gradients, should I turn it off in ravines?",
     "p1-sgd-momentum-adam"),
    ("Since the universal approximation theorem guarantees that gradient descent finds a good network, why "
     "bother with depth?", "p1-universal-approximation"),
    ("Since a softmax temperature above 1 makes the distribution sharper, how do I get more varied samples?",
     "p1-softmax"),
    ("Given that the backward pass starts at the input layer and moves toward the output, where are the "
     "gradients stored?", "p1-backprop-chain-rule"),
    ("Since automatic differentiation is a numerical approximation like finite differences, how accurate "
     "are its gradients?", "p1-computational-graph-autodiff"),
    ("Why does RMSProp, like AdaGrad, sum all past squared gradients so its steps keep shrinking?",
     "p1-nesterov-rmsprop"),
    ("With inverted dropout, since you must multiply the weights by 1 - p at test time, where does that "
     "scaling go?", "p1-dropout-ensemble"),
    ("Given that hinge loss keeps pushing correctly classified points further away forever, is it like "
     "cross-entropy?", "p1-hinge-and-choosing-loss"),
    # A paraphrase far from the listed wording: MiniLM puts it nearer the correction than the mistake.
    pytest.param("Since batch norm keeps using each batch's own mean and variance at inference time, how do I "
                 "make single-image predictions stable?", "p1-batch-norm",
                 marks=pytest.mark.xfail(strict=True, reason="known limit: paraphrase nearer the correction")),
]
# True premises about the same entries: nothing to correct.
TRUE_PREMISES = [
    ("Since XOR is not linearly separable, how does a hidden layer let a network compute it?", "p1-perceptron-xor"),
    ("Given that batch norm uses running averages at inference, why does forgetting eval mode hurt?",
     "p1-batch-norm"),
    ("Why does the sigmoid saturate for inputs of large magnitude?", "p1-activation-comparison"),
    ("Since warmup ramps the learning rate up from near zero, how many steps should it last?",
     "p1-lr-schedules-warmup"),
    ("Since Adam gives every parameter its own effective step size, why does it still need a learning rate?",
     "p1-sgd-momentum-adam"),
    ("Why is automatic differentiation exact up to floating-point error, unlike finite differences?",
     "p1-computational-graph-autodiff"),
    # Rule 53 (evals/README.md): the entry's "adapters add inference latency" speaks of another subject, and "fewer
    # gates" is nearer the two-gates correction than the mistake "LSTMs consistently outperform GRUs"
    ("Since LoRA adds no inference latency, why do people still use adapters?", "p4-peft-comparison"),
    ("Given that GRUs have fewer gates than LSTMs, when are they preferred?", "p2-gru-vs-lstm"),
]


def passage(entry) -> tuple[str, object]:
    return f"{entry.question}\n\n{entry.answer}", entry


@pytest.mark.parametrize("question, qid", WRONG_PREMISES)
def test_a_wrong_premise_is_corrected_with_a_sentence_of_the_entry(question, qid, bank, embeddings):
    from coach.premise import correct

    correction = correct(question, [passage(bank[qid])], embeddings)
    assert correction is not None, f"no correction for: {question}"
    assert correction.source == 1
    shown = correction.render(1)
    assert shown.startswith("The premise of the question is not right:")
    plain = correction.sentence.replace("*", "").replace("`", "")
    assert plain.split()[0] in bank[qid].answer.replace("*", "").replace("`", ""), "cites the entry's own sentence"
    assert all(citations_of(s) == [1] for s in split_sentences(shown))


@pytest.mark.parametrize("question, qid", TRUE_PREMISES)
def test_a_true_premise_is_left_alone(question, qid, bank, embeddings):
    from coach.premise import correct

    assert correct(question, [passage(bank[qid])], embeddings) is None


def test_questions_without_a_premise_presuppose_nothing():
    from coach.premise import presupposed

    assert presupposed("What is batch normalization?") == []
    assert presupposed("Explain the gates of an LSTM.") == []
    assert presupposed("Since dropout zeroes units at random, why does it regularize?") == ["dropout zeroes units at random"]
    assert presupposed("Why doesn't ReLU saturate for positive inputs?") == ["not ReLU saturate for positive inputs"]


def test_the_answer_opens_with_the_correction_and_cites_it(retriever):
    """Through the whole pipeline: retrieval finds the entry, the answer's first sentence corrects the
    premise, cites [1], and the rest of the answer follows."""
    from coach.answer import Answerer
    from coach.llm import ExtractiveBackend

    answerer = Answerer(retriever=retriever, backend=ExtractiveBackend())
    answer = answerer.ask(WRONG_PREMISES[0][0])
    first = split_sentences(answer.answer)[0]
    assert first.startswith("The premise of the question is not right") and citations_of(first) == [1]
    assert "running averages" in first
    assert answer.corrected_premise and len(split_sentences(answer.answer)) > 2
    control = answerer.ask(TRUE_PREMISES[1][0])
    assert control.corrected_premise is None and not control.answer.startswith("The premise")


def test_a_model_sentence_the_entry_contradicts_is_dropped(retriever):
    """The support check alone keeps a negated near-copy; the contradiction check removes it."""
    from coach.answer import Answerer
    from coach.llm import ExtractiveBackend

    answerer = Answerer(retriever=retriever, backend=ExtractiveBackend())
    hit = next(h for h in retriever.search("batch normalization at inference", k=3)
               if h.metadata.get("qid") == "p1-batch-norm")
    passages = [(hit, answerer.whole_answer(hit))]
    raw = ("At inference batch norm does not use running averages of the mean and variance collected during "
           "training [1]. During training each example is normalized with statistics of its batch [1].")
    text, _, generated, dropped = answerer.keep_supported(raw, passages)
    assert (generated, dropped) == (2, 1), text
    assert "does not use" not in text


def test_an_entry_never_contradicts_its_own_sentences(bank, embeddings):
    """A sentence copied from an entry (or an unbroken part of one, as the composer quotes the first sentence of a
    list item) shares the words of the entry's misconceptions; it was read as one of them (55 of the dev set's
    tuning-half answer sentences were counted wrong that way). A copy that drops one of its negations is still
    contradicted."""
    from coach.compose import entry_body, units_of
    from coach.premise import contradiction

    entries = {bank[qid] for _, qid in [*WRONG_PREMISES[:-1], *TRUE_PREMISES]} | {bank["p4-bert-era-vs-llm"]}
    flagged = []
    for entry in sorted(entries, key=lambda e: e.id):
        text, _ = passage(entry)
        for unit in units_of(entry_body(text)):
            if unit.kind in ("sentence", "item") and contradiction(unit.text, text, entry, embeddings):
                flagged.append((entry.id, unit.text))
    assert flagged == []
    text, entry = passage(bank["p1-activation-comparison"])
    assert "ReLU is cheap and does not saturate for positive inputs" in text
    found = contradiction("ReLU is cheap and saturates for positive inputs", text, entry, embeddings)
    assert found is not None and found[1] == "negation"


def test_a_true_premise_is_not_corrected_by_a_neighbouring_entrys_mistake(retriever, bank, embeddings):
    """Through the whole pipeline the premise meets the mistakes of every retrieved entry. One that denies a mistake
    ("no latency" against "always add latency") or says a third of its words does not state it; the wrong premise
    that does is still corrected. (Each true premise here was corrected before rule 50: evals/README.md.)"""
    from coach.answer import Answerer
    from coach.llm import ExtractiveBackend
    from coach.premise import _matches

    answerer = Answerer(retriever=retriever, backend=ExtractiveBackend())
    for true in ("Given that dropout is only active during training, why does model.eval() matter?",
                 "Given that early stopping monitors validation loss, how does it act as a regularizer?"):
        assert answerer.ask(true).corrected_premise is None, true
    wrong = answerer.ask("Since LoRA adapters always slow down inference, why use them?")
    assert wrong.corrected_premise and wrong.answer.startswith("The premise of the question is not right")
    claim, pair = "LoRA adds no inference latency", next((m.wrong, m.right) for m in bank["p4-lora"].misconceptions
                                                         if "latency" in m.wrong)
    vectors = embeddings.embed_sentences([claim, *pair])
    assert not _matches(claim, pair, vectors) and _matches(pair[0], pair, embeddings.embed_sentences([pair[0], *pair]))
