"""The grounded answer pipeline: refusal, blocked input, validated citations, streaming, fallbacks."""
from __future__ import annotations

import json
import random
import time

import pytest

from coach.text import citations_of, split_sentences
from conftest import free_port, run_cli
from evals import datasets
from helpers import ASK_KEYS, assert_grounded


def load_set(name: str) -> list[dict]:
    return datasets.load_jsonl(datasets.SETS / name)


def test_ask_json_keeps_the_contract(corpus_index):
    out = run_cli("app.py", "ask", "what is catastrophic forgetting?", "--json", env={"COACH_LLM": "extractive"})
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert set(doc) >= ASK_KEYS
    assert_grounded(doc)
    assert any("forgetting" in c["question"].lower() for c in doc["citations"])
    assert doc["timings"]["retrieve_ms"] > 0 and doc["timings"]["total_ms"] >= doc["timings"]["retrieve_ms"]


def test_ask_batch_answers_refuses_and_blocks_in_input_order(corpus_index, tmp_path):
    rows = [{"question": "How does Adam correct the bias of its moment estimates?"},
            {"question": "What is the best recipe for sourdough bread?"},
            {"question": "x" * 1500}]
    batch = tmp_path / "questions.jsonl"
    batch.write_text("\n".join(json.dumps(row) for row in rows) + "\n")
    out = run_cli("app.py", "ask", "--batch", str(batch), "--json", env={"COACH_LLM": "extractive"})
    assert out.returncode == 0, out.stderr
    docs = [json.loads(line) for line in out.stdout.strip().split("\n")]
    assert [d["question"][:40] for d in docs] == [r["question"][:40] for r in rows]
    assert_grounded(docs[0])
    assert docs[1]["refused"] and not docs[1]["citations"] and docs[1]["suggestions"]
    assert docs[2]["blocked"] and docs[2]["guard"] == "input_length" and "limit is 1000" in docs[2]["answer"]


@pytest.mark.parametrize("question, guard", [("", "input_empty"), ("   \n ", "input_empty"),
                                             ("why? " * 300, "input_length")])
def test_empty_and_overlong_questions_are_blocked_politely(extractive, question, guard):
    answer = extractive.ask(question)
    assert answer.blocked and answer.guard == guard and not answer.citations
    assert "question" in answer.answer.lower() and len(answer.answer) < 200


def test_refuses_out_of_scope_and_answers_in_scope(extractive, gold_answers):
    """The calibrated threshold on the sets it was fitted on: most off-topic questions refused with
    suggestions, most bank questions answered (the whole gold set: a sample of 30 moves the share by
    3 points a question), every answer of a sample grounded."""
    out_of_scope = load_set("out_of_scope.jsonl")
    refused = [extractive.ask(row["query"]) for row in out_of_scope]
    assert sum(a.refused for a in refused) / len(refused) >= 0.9
    assert all(a.suggestions and not a.citations for a in refused if a.refused)
    answers = [answer for _, answer in gold_answers]  # evals/sets/retrieval.jsonl
    assert sum(not a.refused for a in answers) / len(answers) >= 0.9
    for answer in random.Random(4).sample(answers, 30):
        if not answer.refused:
            assert_grounded(answer.as_json())


def test_post_processing_removes_invented_claims_and_citation_numbers(extractive, retriever):
    """A model answer with a true sentence citing a passage that was never given ([7]), a true but
    miscited sentence, and an invented one: the first two are re-cited, the third is dropped."""
    hits = retriever.search("How does dropout regularize a network?", k=2)
    passages = [(hit, extractive.whole_answer(hit)) for hit in hits]
    raw = ("Dropout zeroes each unit with probability p at every training step [7]. "
           "At test time dropout is switched off and all units are used [2]. "
           "Dropout was invented at Google in 2009 to speed up training of recommender systems [1].")
    text, cited, generated, dropped = extractive.keep_supported(raw, passages)
    assert (generated, dropped) == (3, 1)
    assert "Google" not in text and "[7]" not in text
    sentences = split_sentences(text)
    assert len(sentences) == 2 and all(citations_of(s) == [1] for s in sentences), text
    assert cited == {1}


def test_follow_up_is_answered_in_the_context_of_the_conversation(extractive):
    history = [{"role": "user", "content": "What is catastrophic forgetting?"},
               {"role": "assistant", "content": "A sharp loss of old-task skill after training on new data [1]."}]
    answer = extractive.ask("and how do you reduce it?", history)
    assert "forgetting" in answer.standalone_question.lower()
    assert_grounded(answer.as_json())
    assert any("forget" in c["question"].lower() or "consolidation" in c["question"].lower()
               for c in answer.citations)


def test_llamacpp_answer_streams_then_is_checked(retriever):
    from coach.answer import Answer, Answerer
    from coach.llm import get_backend

    answerer = Answerer(retriever=retriever, backend=get_backend(kind="llamacpp"))
    started, arrivals, tokens, final = time.perf_counter(), [], [], None
    for event in answerer.stream("Why do transformers need positional encodings?"):
        if isinstance(event, Answer):
            final = event
        else:
            arrivals.append(time.perf_counter() - started)
            tokens.append(event)
    assert len(tokens) >= 5 and arrivals[0] < arrivals[-1], "tokens arrive one by one"
    assert final is not None and final.generated_sentences >= 1
    assert final.timings["first_token_ms"] is not None
    assert final.timings["first_token_ms"] <= final.timings["total_ms"]
    assert_grounded(final.as_json())


def test_openai_backend_answers_through_the_pipeline(retriever, llama_server):
    from coach.answer import Answerer
    from coach.llm import OpenAIBackend

    answerer = Answerer(retriever=retriever, backend=OpenAIBackend(llama_server, "smollm2", None))
    answer = answerer.ask("What is catastrophic forgetting?")
    assert answer.backend == "openai (smollm2)"
    assert answer.generated_sentences >= 1 and answer.timings["first_token_ms"] is not None
    assert_grounded(answer.as_json())


def test_server_down_falls_back_to_extractive_and_says_so(retriever):
    from coach.answer import Answerer
    from coach.llm import OpenAIBackend

    down = OpenAIBackend(f"http://127.0.0.1:{free_port()}/v1", "smollm2", None, timeout=5, retries=0)
    answer = Answerer(retriever=retriever, backend=down).ask("What is catastrophic forgetting?")
    assert answer.fallback and "not reachable" in answer.fallback and "extractively" in answer.fallback
    assert_grounded(answer.as_json())


def test_the_model_prefills_the_prompts_shared_start_and_generation_reuses_it(retriever):
    """The loader evaluates the system prompt up to its canary while retrieval runs; an answer's prompt
    must start with exactly those tokens, or llama.cpp evaluates the whole prompt again after retrieval."""
    from coach.answer import Answerer, shared_prompt_start
    from coach.evidence import Sentence
    from coach.guards import Spotlight
    from coach.llm import get_backend

    answerer = Answerer(retriever=retriever, backend=get_backend(kind="llamacpp"))
    backend = answerer.backend  # waits for the prefill
    prefilled = backend.prefilled
    assert len(prefilled) > 100 and shared_prompt_start().startswith("You are an interview coach")
    chosen = [Sentence(1, 0, "Dropout zeroes each unit with probability p during training.", 1.0)]
    for question in ("What is dropout?", "Why is dropout switched off at test time?"):
        prompt = backend.prompt_tokens(answerer.messages(question, chosen, Spotlight.new()))
        assert prompt[:len(prefilled)] == prefilled, "an answer prompt starts with the prefilled tokens"

    evaluated, eval_tokens = [], backend.llm.eval
    backend.llm.eval = lambda tokens: (evaluated.append(len(tokens)), eval_tokens(tokens))[1]
    try:
        backend.prefill(shared_prompt_start())  # as a new Answerer would: the prefix is kept, not re-evaluated
        assert evaluated == []
        request = answerer.retrieve("What is dropout?", (), time.perf_counter(), scope="all")
        answerer.prepare_evidence(request)
        prompt = backend.prompt_tokens(answerer.messages(request.answer.standalone_question, request.chosen,
                                                         request.spotlight, request.flagged))
        list(answerer.generate_under_guard(request))
    finally:
        del backend.llm.eval
    assert evaluated and evaluated[0] <= len(prompt) - len(prefilled), "only the question's own tail is prefilled"


def test_retrieval_runs_while_the_model_is_still_loading(retriever):
    import threading

    from coach.answer import Answerer, shared_prompt_start
    from coach.llm import Backend

    class Loading(Backend):
        name, model = "loading", "slow"

        def __init__(self):
            self.release, self.prefix = threading.Event(), None

        def prefill(self, prefix):
            self.release.wait(60)
            self.prefix = prefix

        def stream(self, messages, max_tokens=256):
            yield from ()

    backend = Loading()
    answerer = Answerer(retriever=retriever, backend=backend)
    request = answerer.retrieve("What is dropout?", (), time.perf_counter(), scope="all")
    assert request.relevant and not answerer.loader.ready(), "retrieved without waiting for the model"
    backend.release.set()
    answer = answerer.ask("What is dropout?")
    assert backend.prefix == shared_prompt_start() and answer.backend == "loading (slow)"
    assert_grounded(answer.as_json())


class Scripted:
    """A model that writes `text` word by word and counts the words it was asked for."""

    def __init__(self, text: str, capable: bool):
        from coach.llm import Backend

        class Words(Backend):
            name = "scripted"

            def stream(inner, messages, max_tokens=256):
                for word in text.split(" "):
                    self.sent += 1
                    yield word + " "

        self.sent, self.backend = 0, Words()
        self.backend.capable = capable


FIVE_SENTENCES = ("Dropout zeroes each unit with probability p during training [1]. The kept units are scaled "
                  "by 1/(1-p) [1]. At test time dropout is switched off [1]. Each mask defines a thinned "
                  "subnetwork [1]. Training approximates an ensemble of them [1].")


def test_the_small_models_answer_gives_way_when_it_states_fewer_key_points(retriever):
    """Rule 55 (evals/README.md): a model that is not capable keeps its answer only when it states as many of the
    entry's key points as the bank's composed answer; one true sentence copied from the entry states fewer. A
    capable model's answer is judged by the support check alone, as before."""
    from coach.answer import Answerer, bank_entries
    from coach.compose import points_stated

    one = ("Dropout zeroes each unit with probability p at every training step, sampling a fresh random mask for "
           "every example and every step [1].")
    small = Answerer(retriever=retriever, backend=Scripted(one, capable=False).backend).ask("What is dropout?")
    assert small.generated_sentences == 1 and small.dropped_sentences == 0  # the support check kept it
    assert "fewer of the entry's key points" in small.fallback and small.answer.count("[1]") > 1
    entry_points = next(e for e in bank_entries().values() if e.question == small.citations[0]["question"]).key_points
    assert points_stated(one, entry_points) < points_stated(small.answer, entry_points)
    capable = Answerer(retriever=retriever, backend=Scripted(one, capable=True).backend).ask("What is dropout?")
    assert capable.fallback is None and capable.answer.startswith("Dropout zeroes each unit")
    assert_grounded(small.as_json())


def test_the_small_model_stops_after_its_third_sentence(retriever):
    from coach.answer import SMALL_MODEL_SENTENCES, Answer, Answerer, sentences_before_the_next

    assert SMALL_MODEL_SENTENCES == 3
    assert sentences_before_the_next("One two three four five [1]. Six seven", 1) == ["One two three four five [1]."]
    assert sentences_before_the_next("One two three four five [1].", 1) is None  # the next has not begun
    small = Scripted(FIVE_SENTENCES, capable=False)
    events = list(Answerer(retriever=retriever, backend=small.backend).stream("What is dropout?"))
    streamed, final = "".join(e for e in events if isinstance(e, str)), events[-1]
    assert isinstance(final, Answer)
    assert len(split_sentences(streamed)) == 3 and streamed.rstrip().endswith("switched off [1].")
    assert small.sent == len(" ".join(FIVE_SENTENCES.split(". ")[:3]).split(" ")) + 1, "stopped at the 4th's first word"
    assert final.generated_sentences == 3

    capable = Scripted(FIVE_SENTENCES, capable=True)  # a capable model writes what it writes
    events = list(Answerer(retriever=retriever, backend=capable.backend).stream("What is dropout?"))
    assert capable.sent == len(FIVE_SENTENCES.split(" ")) and events[-1].generated_sentences == 5
