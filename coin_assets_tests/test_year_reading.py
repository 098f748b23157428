"""The year reader: the committed recogniser, the decision rule on fixed readings, the rim's geometry,
placements read on generated photos, what has no year, and the promotion rule that guards the reading."""

from __future__ import annotations

import io
import json
import math
import random
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

from coin_assets.ml import registry as reg
from coin_assets.ml.year_reading import (
    READER_RECORD,
    READER_WEIGHTS,
    SECOND_READER,
    ReaderSettings,
    TextLine,
    YearReader,
    confirmed,
    decide,
    face_view,
    load_recognizer,
    reading_order,
    rim_to_view,
    sha256_of,
    unwrap_rim,
)
from coin_assets.synth import varied as v


def line(text: str, prob: float = 0.99, view: str = "face", reader: str = "ocr") -> TextLine:
    return TextLine(text, prob ** len(text), tuple([prob] * len(text)), ((0.1, 0.1), (0.2, 0.1), (0.2, 0.2)), view,
                    reader)


@pytest.fixture(scope="module")
def reader() -> YearReader:
    return YearReader(load_recognizer(READER_WEIGHTS))


def jpeg(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=90)
    return buf.getvalue()


# ------------------------------------------------------------------------------------- committed weights


def test_the_committed_weights_match_their_record_and_load():
    record = json.loads(READER_RECORD.read_text())
    assert sha256_of(READER_WEIGHTS) == record["sha256"]
    for key in ("config", "corpus_hash", "val_metrics", "command", "steps"):
        assert record[key], key
    assert "recognizer_training" in record["command"]
    model = load_recognizer(READER_WEIGHTS, expected_sha256=record["sha256"])
    assert sum(p.numel() for p in model.parameters()) > 100_000
    with pytest.raises(ValueError, match="sha256"):
        load_recognizer(READER_WEIGHTS, expected_sha256="0" * 64)


def test_the_line_recogniser_comes_from_its_wheel_and_its_absence_is_a_clear_error(monkeypatch):
    from coin_assets.ml import year_reading

    model, characters = year_reading.ocr_recognizer_files()
    assert model.is_file() and model.stat().st_size > 1_000_000
    assert {str(d) for d in range(10)} <= set(characters.read_text(encoding="utf-8").splitlines())
    monkeypatch.setattr(year_reading, "OCR_RECOGNIZER_PACKAGE", "no_such_ocr_wheel")
    with pytest.raises(ModuleNotFoundError, match="no_such_ocr_wheel.*make env"):
        year_reading.ocr_recognizer_files()


# ----------------------------------------------------------------------------------- the decision rule


def test_a_clear_year_is_read_and_numbers_that_are_not_years_are_not():
    settings = ReaderSettings()
    assert decide([line("1987"), line("1987"), line("50"), line("LIBERTY")], settings).year == 1987
    for distractors in (["50"], ["250"], ["1/2"], ["LIBERTY"], ["12345"], ["10", "25"], ["1788"], ["2087"]):
        reading = decide([line(t) for t in distractors * 2], settings)
        assert reading.year is None, distractors
    # a mint mark beside the year, a year inside a legend with a range: the four digits are found
    assert decide([line("1987D"), line("1987")], settings).year == 1987
    assert decide([line("D1964"), line("1964")], settings).year == 1964


def test_with_min_reads_a_year_read_by_one_crop_only_is_not_trusted():
    lone = decide([line("1990", prob=0.999), line("LIBERTY")], ReaderSettings(min_reads=2))
    assert lone.year is None and "1 crop(s)" in lone.reason and lone.digits == "1990"


def test_the_platform_recogniser_corroborates_but_does_not_propose():
    # off by default: its reads count for nothing
    assert decide([line("1990", prob=0.9), line("1993", prob=0.9)] + [line("1990", reader="own")] * 3,
                  ReaderSettings(min_confidence=0.6)).year is None
    settings = ReaderSettings(min_confidence=0.6, min_share=0.75, min_reads=1, readers=("ocr", "own"), max_rival=1.0)
    alone = decide([line("1990", reader="own")] * 3, settings)
    assert alone.year is None and alone.reason.startswith("no four-digit year")
    # its near miss (1993) that PP-OCR never read counts for nothing
    assert decide([line("1990", prob=0.9), line("1993", reader="own")], settings).year == 1990
    # its agreeing reads add weight to a year PP-OCR read: they settle a contest between two of PP-OCR's reads
    contest = [line("1990", prob=0.9), line("1993", prob=0.9)]
    assert decide(contest, settings).year is None
    helped = decide(contest + [line("1990", reader="own")] * 3, settings)
    assert helped.year == 1990, helped.reason
    # without a PP-OCR reader, the platform's recogniser proposes (corroborating=())
    assert decide([line("1990", reader="own")] * 3, ReaderSettings(readers=("own",), corroborating=())).year == 1990


def test_an_unsure_or_contested_reading_abstains_and_says_why():
    settings = ReaderSettings(min_confidence=0.6, min_share=0.75, min_reads=1, max_rival=1.0)  # the share alone
    unsure = decide([line("1987", prob=0.8)], settings)  # 0.8 ** 4 = 0.41
    assert unsure.year is None and "below" in unsure.reason and unsure.digits == "1987"
    contested = decide([line("1987"), line("1957", prob=0.97)], settings)
    assert contested.year is None and "of the years read" in contested.reason and "1957" in contested.reason
    # the same year read by several crops adds up; a lone misreading beside it does not win
    agreed = decide([line("1987", 0.95), line("1987", 0.9), line("1987", 0.9), line("1981", 0.9)], settings)
    assert agreed.year == 1987 and agreed.confidence > 0.5
    # a date read on the coin beside the year (a founding date in range) makes it unreadable, not a guess
    two_dates = decide([line("1999"), line("1999"), line("1976"), line("1976")], settings)
    assert two_dates.year is None
    # many crops agreeing on a misread digit ("1929" read "1920" on eight views) outweigh the year read best:
    # contested, not answered
    settings = replace(settings, max_rival=0.5)
    outvoted = decide([line("1929", 0.995)] + [line("1920", 0.98)] * 8, settings)
    assert outvoted.year is None and "also read" in outvoted.reason and "1929" in outvoted.reason
    # a second year read with real confidence keeps the coin contested however much weight the first piles up
    piled = [line("2026", 0.99)] * 12 + [line("2020", 0.92)]  # 0.92 ** 4 = 0.72
    assert decide(piled, settings).year is None
    assert decide(piled, replace(settings, max_rival=0.8)).year == 2026
    # a faint read of another year does not
    assert decide([line("2026", 0.99)] * 12 + [line("2020", 0.8)], settings).year == 2026


def box(x: float, y: float, w: float = 0.04, h: float = 0.03, turn: float = 0.0) -> tuple:
    """A text box (tl, tr, br, bl) at (x, y), turned by ``turn`` degrees."""
    c, s = math.cos(math.radians(turn)), math.sin(math.radians(turn))
    return tuple((x + px * c - py * s, y + px * s + py * c) for px, py in ((0, 0), (w, 0), (w, h), (0, h)))


def at(text: str, polygon: tuple, prob: float = 0.97) -> TextLine:
    return TextLine(text, prob ** len(text), tuple([prob] * len(text)), polygon, "face", "ocr")


@pytest.mark.parametrize("turn", [0.0, 35.0, 180.0])
def test_a_year_split_by_the_design_is_joined_and_unrelated_numbers_are_not(turn):
    settings = ReaderSettings(min_confidence=0.6)
    c, s = math.cos(math.radians(turn)), math.sin(math.radians(turn))
    beside = (0.4 + 0.12 * c, 0.5 + 0.12 * s)  # three box lengths along the first half's baseline
    split = decide([at("19", box(0.4, 0.5, turn=turn)), at("48", box(*beside, turn=turn))], settings)
    assert split.year == 1948, split.reason
    assert len(split.polygon) == 4
    # the halves must sit on one line: a "20" above a "10" (a denomination below) is no year
    below = (0.4 - 0.08 * s, 0.5 + 0.08 * c)
    assert decide([at("20", box(0.4, 0.5, turn=turn)), at("10", box(*below, turn=turn))], settings).year is None
    # nor halves of very different sizes, nor ones too far apart
    big = decide([at("19", box(0.4, 0.5, turn=turn)), at("48", box(*beside, w=0.1, h=0.08, turn=turn))], settings)
    far = (0.4 + 0.4 * c, 0.5 + 0.4 * s)
    assert big.year is None and decide([at("19", box(0.4, 0.5, turn=turn)),
                                        at("48", box(*far, turn=turn))], settings).year is None
    assert decide([at("19", box(0.4, 0.5, turn=turn)), at("48", box(*beside, turn=turn))],
                  replace(settings, join_split=False)).year is None


def test_the_reader_reads_a_photo_decoded_as_its_training_photos_were():
    """Pillow's draft, not the silver images' M/8 scales: the line reader was trained and its trust calibrated
    on Pillow's decoding, and a misread digit can turn on the difference."""
    from coin_assets.core.images import clean_image
    from coin_assets.ml.pyfunc import READ_MAX_SIDE, front_image

    photo = Image.linear_gradient("L").resize((2400, 1600)).convert("RGB")  # draft: 2 400 px; M/8: 1 800
    photo.paste((200, 60, 40), (400, 300, 1900, 1500))
    data = jpeg(photo)
    drafted = Image.open(io.BytesIO(clean_image(data, max_side=READ_MAX_SIDE, jpeg_decoder="pillow").data))
    scaled = Image.open(io.BytesIO(clean_image(data, max_side=READ_MAX_SIDE, jpeg_decoder="simplejpeg").data))
    read = np.asarray(front_image(data))
    assert np.array_equal(read, np.asarray(drafted.convert("RGB")))
    assert not np.array_equal(read, np.asarray(scaled.convert("RGB")))  # the two decodings do differ here


def test_the_second_recogniser_confirms_a_year_only_when_it_is_sure_of_it_and_of_nothing_else():
    settings = ReaderSettings()  # min_confidence 0.9, max_rival 0.5

    def second(text: str, polygon: tuple = box(0.4, 0.5), prob: float = 0.99) -> TextLine:
        return replace(at(text, polygon, prob), reader=SECOND_READER)

    assert confirmed(1987, [second("1987")], settings) == pytest.approx(0.99 ** 4)
    assert confirmed(1987, [second("1987", prob=0.97)], settings) is None  # 0.885: not sure enough
    assert confirmed(1987, [second("1981")], settings) is None
    # sure of the year, but another crop behind it reads another year with confidence: contested
    assert confirmed(1987, [second("1987"), second("1981", box(0.4, 0.6), prob=0.9)], settings) is None
    assert confirmed(1987, [second("1987"), second("1981", box(0.4, 0.6), prob=0.8)], settings) is not None
    # a split year's halves, read again, are joined as the first recogniser's are
    assert confirmed(1948, [second("19"), second("48", box(0.52, 0.5))], settings) is not None


def test_a_year_read_unsure_is_answered_when_the_second_recogniser_reads_it_on_the_same_crops(reader):
    year_rng, style_rng = v.coin_rngs(4040, 1)
    style = replace(v.sample_style(style_rng), placement="below", rotation=0.0, wear=0.1, blur=0.0)
    front, _ = v.render_photo_pair(1987, style, style_rng)
    photo = Image.open(io.BytesIO(jpeg(front.image))).convert("RGB")
    view, affine, _ = reader.coin_view(photo)
    crops, where = next(reader.stages(view, affine, photo))
    crops_read: dict = {}
    lines = reader.recognise(crops, where, photo.size, crops_read)
    year_lines = [t for t in lines if "1987" in t.text]
    assert year_lines, [t.text for t in lines]
    # the same crops, as if the fine-tuned recogniser had read them with 0.85 a digit (0.52 a year)
    unsure = [replace(t, confidence=0.85 ** len(t.text), char_probs=(0.85,) * len(t.text)) for t in year_lines]
    behind = {id(u): crops_read[id(t)] for u, t in zip(unsure, year_lines, strict=True)}
    assert decide(unsure, reader.settings).year is None
    reading = reader.second_opinion(unsure, behind, {})
    assert reading is not None and reading.year == 1987 and "second recogniser" in reading.reason
    assert reading.polygon in [u.polygon for u in unsure]
    # below confirm_from, or behind crops that do not show it, the year stays unanswered
    too_faint = [replace(u, char_probs=(0.8,) * len(u.text)) for u in unsure]  # 0.41
    assert reader.second_opinion(too_faint, {id(f): behind[id(u)] for f, u in zip(too_faint, unsure, strict=True)},
                                 {}) is None
    others = [t for t in lines if t.text and "1987" not in t.text and id(t) in crops_read]
    assert others
    elsewhere = {id(u): crops_read[id(others[0])] for u in unsure}
    assert reader.second_opinion(unsure, elsewhere, {}) is None


@pytest.mark.parametrize("turn", [0.0, 35.0, 180.0])
def test_split_halves_join_in_reading_order_only(turn):
    """"20" left of "19" is 2019, never 1920: the second half must come after the first as it is read."""
    settings = ReaderSettings(min_confidence=0.6)
    c, s = math.cos(math.radians(turn)), math.sin(math.radians(turn))
    after = (0.4 + 0.12 * c, 0.5 + 0.12 * s)
    reading = decide([at("20", box(0.4, 0.5, turn=turn)), at("19", box(*after, turn=turn))], settings)
    assert reading.year == 2019, reading.reason


def test_a_line_read_turned_starts_its_region_where_its_reading_starts():
    """A level line whose crop was read upside down (the coin's year upside down) has its region's first
    corner at the line's bottom-right; the halves of "20 · 19" read that way join as 2019."""
    level = np.array([[0.0, 0.0], [10.0, 0.0], [10.0, 4.0], [0.0, 4.0]])
    assert np.allclose(reading_order(level, 0), level)
    assert np.allclose(reading_order(level, 180)[0], [10.0, 4.0])
    assert np.allclose(reading_order(level, 90)[:2], [[10.0, 0.0], [10.0, 4.0]])  # read from the top-right, down
    assert np.allclose(reading_order(level, 270)[:2], [[0.0, 4.0], [0.0, 0.0]])
    arc = np.arange(24, dtype=float).reshape(12, 2)  # along the rim: the top edge, then the bottom edge backwards
    assert np.allclose(reading_order(arc, 180)[0], arc[6])
    # upside down in the photo: "19" lies left of "20"; each is read on its crop turned a half
    left, right = level / 100 + [0.3, 0.5], level / 100 + [0.45, 0.5]
    halves = [TextLine("19", 0.95, (0.97, 0.98), tuple(map(tuple, reading_order(left, 180))), "face", "ocr"),
              TextLine("20", 0.95, (0.97, 0.98), tuple(map(tuple, reading_order(right, 180))), "face", "ocr")]
    assert decide(halves, ReaderSettings(min_confidence=0.6)).year == 2019


def test_settings_recorded_by_an_older_version_still_load():
    old = {"min_confidence": 0.95, "margin": 0.7, "early_exit": 0.95, "min_reads": 2, "year_min": 1900,
           "year_max": 2039}
    settings = ReaderSettings.from_dict(old)
    assert settings.min_confidence == 0.95 and settings.min_reads == 2 and settings.early_exit is True
    assert settings.confirm_from is None  # logged before the second opinion: it reads as it did
    assert ReaderSettings.from_dict(ReaderSettings().to_dict()) == ReaderSettings()


def test_nothing_read_is_unreadable():
    reading = decide([], ReaderSettings())
    assert reading.year is None and reading.reason.startswith("no four-digit year")
    assert reading.to_dict()["region"] == []


# ------------------------------------------------------------------------------------------- geometry


def test_the_unwrapped_rim_maps_back_onto_the_coin():
    view = Image.new("RGB", (512, 512), (0, 0, 0))
    view.putpixel((256, 20), (255, 255, 255))  # near the top of the rim
    strip, meta = unwrap_rim(view)
    arr = np.asarray(strip).sum(2)
    y, x = np.unravel_index(int(arr.argmax()), arr.shape)
    back = rim_to_view(np.array([[x + 0.5, y + 0.5]], float), meta)[0]
    assert math.hypot(back[0] - 256.5, back[1] - 20.5) < 3.0


def test_face_view_maps_view_pixels_to_photo_pixels():
    img = Image.new("RGB", (640, 480))
    _, affine = face_view(img, 300.0, 200.0, 100.0)
    centre = np.array([256.0, 256.0]) @ affine[:, :2].T + affine[:, 2]
    assert np.allclose(centre, [300.0, 200.0], atol=0.5)


# ---------------------------------------------------------------------------------- on generated photos


@pytest.fixture(scope="module")
def placement_readings(reader) -> dict[str, list[tuple[int, object]]]:
    """Four coins of each placement (fixed seeds, light wear, no blur), read from their JPEG photos."""
    out = {}
    for placement in v.PLACEMENTS:
        out[placement] = []
        for i in range(4):
            year_rng, style_rng = v.coin_rngs(5150, i)
            year = v.sample_year(year_rng)
            style = replace(v.sample_style(style_rng), placement=placement, wear=0.1, blur=0.0)
            front, _ = v.render_photo_pair(year, style, style_rng)
            out[placement].append((year, reader.read(Image.open(io.BytesIO(jpeg(front.image))))))
    return out


@pytest.mark.slow
def test_a_year_in_the_field_is_read(placement_readings):
    rows = {p: placement_readings[p] for p in ("below", "above")}
    right = {p: [r for year, r in readings if r.year == year] for p, readings in rows.items()}
    shown = {p: [(year, r.year, r.reason) for year, r in readings] for p, readings in rows.items()}
    assert all(len(r) >= 2 for r in right.values()) and sum(len(r) for r in right.values()) >= 5, shown
    for reading in right["below"] + right["above"]:
        assert len(reading.polygon) >= 3 and len(reading.digits) == 4 and reading.view in ("face", "photo")


@pytest.mark.slow
def test_a_year_along_the_rim_is_read_and_drawn_as_an_arc(placement_readings):
    right = [r for placement in ("rim_inward", "rim_outward") for year, r in placement_readings[placement]
             if r.year == year]
    assert len(right) >= 2
    assert any(r.view == "rim" and len(r.polygon) == 12 for r in right)  # an arc: six points along each edge


@pytest.mark.slow
def test_no_placement_gets_a_confident_wrong_year(placement_readings):
    wrong = [(p, year, r.year) for p, rows in placement_readings.items() for year, r in rows
             if r.year is not None and r.year != year]
    assert not wrong


@pytest.mark.parametrize("rotation", [135.0, 315.0])
def test_a_year_turned_an_eighth_is_found_by_the_eighth_turns_and_placed_where_it_is(reader, rotation):
    from coin_assets.ml import reader_crops as rc

    year_rng, style_rng = v.coin_rngs(4040, 0)
    style = replace(v.sample_style(style_rng), placement="below", rotation=rotation, shift=(0.0, 0.0), wear=0.1,
                    blur=0.0)
    with_year, _ = v.render_photo_pair(1987, style, style_rng)
    _, style_rng = v.coin_rngs(4040, 0)
    v.sample_style(style_rng)
    without_year, _ = v.render_photo_pair(1987, style, style_rng, year_text="")
    photo = with_year.image.convert("RGB")
    ys, xs = np.nonzero(rc.year_mask(with_year.image, without_year.image, photo.size))
    view, affine, found = reader.coin_view(photo)
    assert found
    *_, (crops, where) = reader.stages(view, affine, photo)  # the last stage: the face turned an eighth
    lines = [t for t in reader.recognise(crops, where, photo.size) if "1987" in t.text]
    assert lines, [t.text for t in reader.recognise(crops, where, photo.size)]
    cx, cy = np.mean([(x * photo.width, y * photo.height) for x, y in lines[0].polygon], axis=0)
    assert xs.min() - 5 <= cx <= xs.max() + 5 and ys.min() - 5 <= cy <= ys.max() + 5


@pytest.mark.slow
def test_a_coin_without_a_year_and_a_photo_without_a_coin_get_no_trusted_year(reader):
    text_rng, style_rng = v.no_year_rngs(77, 0)
    for text in ("", "KMRT"):
        front, _ = v.render_photo_pair(None, v.sample_style(style_rng), style_rng, year_text=text)
        assert reader.read(front.image).year is None
    style = v.sample_style(random.Random(3))
    table = Image.fromarray((v.background(640, 480, style, np.random.default_rng(3)) * 255).astype(np.uint8))
    reading = reader.read(table)
    assert reading.year is None or not reading.coin_found


@pytest.mark.slow
@pytest.mark.parametrize("generator", ["struck", "drawn"])
def test_a_date_before_the_answers_range_is_read_and_never_answered(reader, generator):
    # a coin minted in the 1890s, or a founding date on a later one: its four digits are read as they are, and an
    # "18" is never read as the "19" the reader has seen far more often (1889 answered 1989 would be a confident
    # wrong year)
    from coin_assets.synth import struck

    rng = random.Random(f"old-year:{0 if generator == 'struck' else 2}")
    year = rng.randint(1850, 1899)
    if generator == "struck":
        front, _, _ = struck.render_struck_photo_pair(None, rng, placement="below", year_text=str(year))
    else:
        front, _ = v.render_photo_pair(None, replace(v.sample_style(rng), placement="below"), rng, year_text=str(year))
    reading = reader.read(Image.open(io.BytesIO(jpeg(front.image))))
    assert reading.year is None
    assert any(str(year) in t.text for t in reading.lines), [t.text for t in reading.lines]


@pytest.mark.slow
def test_a_photo_of_both_faces_side_by_side_is_split_and_both_are_read(reader):
    from coin_assets.synth import struck

    year_rng, look_rng = struck.struck_rngs(77, 2)
    year = struck.sample_struck_year(year_rng)
    photo, circles = struck.two_faces_photo(year, look_rng)
    reading = reader.read(Image.open(io.BytesIO(jpeg(photo))))
    assert reading.coins == 2 and "two coins in the photo" in reading.reason
    assert reading.year == year and reading.to_dict()["coins"] == 2
    # the year was read on the face that carries it
    cx, cy = np.mean([(x * photo.width, y * photo.height) for x, y in reading.polygon], axis=0)
    front = circles[0]
    assert math.hypot(cx - front[0], cy - front[1]) <= front[2]


def test_a_line_much_taller_than_the_recogniser_reads_is_box_filtered_not_aliased():
    from coin_assets.ml.year_reading import cut_line

    # black and white pixels at random: sampled point by point (std ~63) they stay noise; averaged over the
    # four-by-four pixels each output pixel covers, they become an even grey
    noise = (np.random.default_rng(0).random((300, 900)) > 0.5).astype(np.uint8) * 255
    quad = np.array([[150.0, 60.0], [750.0, 60.0], [750.0, 240.0], [150.0, 240.0]])
    crop = np.asarray(cut_line(Image.fromarray(noise), quad), np.float32)
    assert crop.shape[0] == 48
    inside = crop[10:-10, 10:-10]
    assert abs(inside.mean() - 127.5) < 10 and inside.std() < 35, (inside.mean(), inside.std())


@pytest.mark.slow
def test_lines_on_a_coin_larger_in_the_photo_than_in_the_view_are_cut_from_the_photo(reader, monkeypatch):
    from coin_assets.ml import year_reading
    from coin_assets.synth import struck

    cut_from: list[tuple[int, int]] = []
    original = year_reading.cut_line

    def spy(img, quad, pad=0.3):
        cut_from.append(img.size)
        return original(img, quad, pad)

    monkeypatch.setattr(year_reading, "cut_line", spy)
    year_rng, look_rng = struck.struck_rngs(4242, 1)
    year = struck.sample_struck_year(year_rng)
    front, _, _ = struck.render_struck_photo_pair(year, look_rng, placement="below", photo_size=(1600, 1200))
    photo = Image.open(io.BytesIO(jpeg(front.image))).convert("RGB")
    view, affine, found = reader.coin_view(photo)
    assert found and np.hypot(*affine[:, 0]) > year_reading.NATIVE_CUT_SCALE
    crops, where = next(reader.stages(view, affine, photo))
    assert crops and set(cut_from) == {photo.size}
    assert any(t.text == str(year) for t in reader.recognise(crops, where, photo.size))
    cut_from.clear()
    small = YearReader(reader.recognizer, replace(reader.settings, cut_from_photo=False))
    next(small.stages(view, affine, photo))
    assert set(cut_from) == {view.size}


# ------------------------------------------------------------------------------------ promotion guard


def test_a_candidate_that_forgets_the_reading_is_not_promoted_and_says_why():
    common = dict(candidate_version="3", production_version="2", production_metrics={"mae": 5.0},
                  sanity_problems=[], reading_tolerance=0.05)
    forgot = reg.decide_promotion(candidate_metrics={"mae": 1.0, "reading_exact": 0.40},
                                  reading_floors={"production v2": 0.90}, **common)
    assert not forgot.promote and forgot.staged
    assert "reads worse than production v2" in forgot.reason and "40.0%" in forgot.reason
    kept = reg.decide_promotion(candidate_metrics={"mae": 1.0, "reading_exact": 0.88},
                                reading_floors={"production v2": 0.90}, **common)
    assert kept.promote, kept.reason
    unscored = reg.decide_promotion(candidate_metrics={"mae": 1.0}, reading_floors={"production v2": 0.5}, **common)
    assert not unscored.promote
