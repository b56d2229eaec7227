"""[ref#i] placeholders: positions, range and availability checks, malformed spellings."""

import pytest

from dreamo_core.conditioning.placeholders import (
    Placeholder,
    find_placeholders,
    placeholder_index,
    placeholder_token,
    validate_placeholders,
)


def test_positions_and_indices():
    prompt = "A woman from [ref#2] and a man from [ref#1]."
    assert prompt[13:20] == "[ref#2]" and prompt[36:43] == "[ref#1]"
    assert find_placeholders(prompt) == [Placeholder(2, 13, 20), Placeholder(1, 36, 43)]
    assert validate_placeholders(prompt, [1, 2]) == find_placeholders(prompt)
    assert placeholder_token(3) == "[ref#3]"


@pytest.mark.parametrize("word, index", [("[ref#3]", 3), ("[ref#12]", 12), ("[ref#3],", None), ("[ref #3]", None),
                                         ("ref#3", None), ("[ref#]", None), ("[REF#3]", None), ("[res]", None)])
def test_placeholder_index_of_a_word(word, index):
    """A whole word that is exactly [ref#i] (the tiny prompt encoder's placeholder rows), nothing looser."""
    assert placeholder_index(word) == index


@pytest.mark.parametrize("prompt", ["", "a cat on a sofa", "brackets [like this] and # signs", "[res] alone"])
def test_no_placeholders(prompt):
    assert find_placeholders(prompt) == []
    assert validate_placeholders(prompt, []) == []


@pytest.mark.parametrize("index", [0, 10, 12])
def test_index_out_of_range(index):
    with pytest.raises(ValueError, match=rf"\[ref#{index}\] is out of range; DreamO has placeholders \[ref#1\] to \[ref#9\]"):
        validate_placeholders(f"a dog from [ref#{index}]", range(1, 10))


def test_index_without_reference_lists_available():
    with pytest.raises(ValueError, match=r"\[ref#3\] has no reference with index 3; available: \[ref#1\], \[ref#2\]"):
        validate_placeholders("[ref#1] meets [ref#3]", [2, 1])
    with pytest.raises(ValueError, match=r"available: none \(no references attached\)"):
        validate_placeholders("[ref#1]", [])


@pytest.mark.parametrize("bad", ["[ref #1]", "[ref#x]", "[REF#1]", "[ref# 1]", "[ref1]", "[ ref#1]"])
def test_malformed_placeholders(bad):
    with pytest.raises(ValueError, match=rf"malformed placeholder '{__import__('re').escape(bad)}'; write it exactly as \[ref#1\]"):
        find_placeholders(f"a cat from {bad} on a sofa")


@pytest.mark.parametrize("bad, good", [("[ref#01]", "[ref#1]"), ("[ref#002]", "[ref#2]")])
def test_leading_zeros_name_the_placeholder_to_write(bad, good):
    with pytest.raises(ValueError, match=rf"^prompt: write {__import__('re').escape(good)}, not "
                                         rf"{__import__('re').escape(bad)}: a placeholder's index has no leading zeros"):
        find_placeholders(f"a dog {bad} on a sofa")


@pytest.mark.parametrize("text", ["[reference]", "[refined look]", "[Refraction]"])
def test_words_starting_with_ref_are_not_placeholders(text):
    assert find_placeholders(f"photo, {text}, [ref#1]") == [Placeholder(1, len(f"photo, {text}, "), len(f"photo, {text}, [ref#1]"))]
