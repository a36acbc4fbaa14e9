"""Vietnamese and English: one catalogue keyed by the English text, and times in the ward's zone.

``gettext``-style keys (the English sentence) make a missing translation fall back to readable
English; a test checks that every key the templates use has its Vietnamese. Times are stored in
UTC and shown in the ward's time zone (default ``Asia/Ho_Chi_Minh``).
"""

from __future__ import annotations

import unicodedata
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

LANGS = ("vi", "en")
DEFAULT_LANG = "vi"
DEFAULT_TZ = "Asia/Ho_Chi_Minh"

VI: dict[str, str] = {
    "Police post console": "Bảng điều khiển đồn công an",
    "Log in": "Đăng nhập",
    "Log out": "Đăng xuất",
    "User name": "Tên đăng nhập",
    "Password": "Mật khẩu",
    "Wrong user name or password.": "Sai tên đăng nhập hoặc mật khẩu.",
    "Too many wrong passwords. Try again in {s} s.": "Sai mật khẩu quá nhiều lần. Thử lại sau {s} giây.",
    "The form expired or was forged. Please try again.":
        "Biểu mẫu đã hết hạn hoặc không hợp lệ. Vui lòng thử lại.",
    "Fleet": "Cột camera",
    "Alerts": "Cảnh báo",
    "Live wall": "Xem trực tiếp",
    "Search": "Tìm kiếm",
    "Evidence": "Chứng cứ",
    "Users": "Người dùng",
    "Audit log": "Nhật ký truy cập",
    "Node": "Cột",
    "Pole": "Cột",
    "State": "Trạng thái",
    "Last heartbeat": "Tín hiệu gần nhất",
    "Faults": "Lỗi",
    "Retention (days)": "Lưu trữ (ngày)",
    "Day/night": "Ngày/đêm",
    "Temperature": "Nhiệt độ",
    "Data used": "Dữ liệu đã dùng",
    "Events": "Sự kiện",
    "Last event": "Sự kiện gần nhất",
    "OK": "Hoạt động",
    "FAULT": "Có lỗi",
    "SILENT": "Mất tín hiệu",
    "LOST": "Mất kết nối",
    "OFFLINE": "Đã tắt",
    "?": "Chưa rõ",
    "day": "ngày",
    "night": "đêm",
    "s ago": "giây trước",
    "never": "chưa có",
    "none": "không",
    "Ward plan": "Sơ đồ phường",
    "Poles without a position in the inventory": "Cột chưa có tọa độ trong danh mục",
    "Worst first": "Cột có vấn đề xếp trước",
    "Live alerts": "Cảnh báo trực tiếp",
    "Newest first": "Mới nhất ở trên",
    "Class": "Loại",
    "All": "Tất cả",
    "person": "người",
    "car": "ô tô",
    "motorcycle": "xe máy",
    "motorbike": "xe máy",
    "bicycle": "xe đạp",
    "truck": "xe tải",
    "bus": "xe buýt",
    "motion": "chuyển động",
    "Acknowledge": "Xác nhận",
    "Acknowledged by {u}": "Đã xác nhận bởi {u}",
    "Filter": "Lọc",
    "Connected": "Đã kết nối",
    "Reconnecting…": "Đang kết nối lại…",
    "No alerts yet.": "Chưa có cảnh báo.",
    "Score": "Độ tin cậy",
    "Time": "Thời gian",
    "Snapshot": "Ảnh chụp",
    "Trace": "Truy vết",
    "Build a case": "Lập hồ sơ",
    "Not allowed": "Không được phép",
    "Your role ({r}) may not open this page. The attempt was recorded.":
        "Vai trò của bạn ({r}) không được mở trang này. Lần truy cập đã được ghi lại.",
    "Not found": "Không tìm thấy",
    "Bad request": "Yêu cầu không hợp lệ",
    "Back": "Quay lại",
    "Role": "Vai trò",
    "operator": "trực ban",
    "technician": "kỹ thuật viên",
    "admin": "quản trị",
    "Active": "Đang hoạt động",
    "Disabled": "Đã khóa",
    "Add user": "Thêm người dùng",
    "Name": "Họ tên",
    "Add": "Thêm",
    "Disable": "Khóa",
    "Enable": "Mở khóa",
    "New password": "Mật khẩu mới",
    "Set": "Đặt",
    "Saved.": "Đã lưu.",
    "Who": "Ai",
    "Action": "Hành động",
    "Target": "Đối tượng",
    "Allowed": "Cho phép",
    "Refused": "Bị từ chối",
    "Address": "Địa chỉ",
    "Detail": "Chi tiết",
    "yes": "có",
    "no": "không",
    "Heartbeat history": "Lịch sử tín hiệu",
    "CPU load": "Tải CPU",
    "Disk free (MB)": "Dung lượng trống (MB)",
    "Frames per second": "Khung hình/giây",
    "Temperature (°C)": "Nhiệt độ (°C)",
    "Link connections": "Số lần kết nối",
    "No heartbeat received yet.": "Chưa nhận được tín hiệu.",
    "Diagnostics": "Chẩn đoán",
    "Run diagnostics": "Chạy chẩn đoán",
    "Restart the node": "Khởi động lại cột",
    "Restart this pole? Recording stops for a few seconds.":
        "Khởi động lại cột này? Việc ghi hình dừng vài giây.",
    "Reason": "Lý do",
    "IR light": "Đèn hồng ngoại",
    "On (night)": "Bật (đêm)",
    "Off (day)": "Tắt (ngày)",
    "Automatic": "Tự động",
    "for minutes": "trong số phút",
    "Apply": "Áp dụng",
    "Override until {t}": "Ghi đè đến {t}",
    "Legal hold": "Phong tỏa dữ liệu",
    "From": "Từ",
    "To": "Đến",
    "Case name": "Tên vụ việc",
    "Hold footage": "Giữ dữ liệu",
    "The node answered": "Cột đã trả lời",
    "The node refused": "Cột từ chối",
    "No answer from the node": "Cột không trả lời",
    "Encoder": "Bộ mã hóa",
    "Uptime": "Thời gian chạy",
    "Firmware": "Phiên bản",
    "Language": "Ngôn ngữ",
    "Open": "Mở",
    "Live": "Trực tiếp",
    "Main stream": "Luồng chính",
    "Sub-stream": "Luồng phụ",
    "Live view stops when this session ends; reload the page to watch on.":
        "Xem trực tiếp dừng khi phiên này kết thúc; tải lại trang để xem tiếp.",
    "The media relay is not configured.": "Chưa cấu hình máy chủ video.",
    "Until": "Đến",
    "Since": "Từ",
    "Colour": "Màu",
    "Poles": "Các cột",
    "Results": "Kết quả",
    "No event matches.": "Không có sự kiện phù hợp.",
    "The archive is not available.": "Kho lưu trữ chưa sẵn sàng.",
    "Signed in as": "Đăng nhập với",
    "online": "trực tuyến",
    "Restart": "Khởi động lại",
    "Open the node page": "Mở trang cột",
    "Show": "Hiện",
    "Timeline": "Dòng thời gian",
    "min": "phút",
    "Keep for days": "Giữ trong số ngày",
    "Older": "Cũ hơn",
    "No pole is online.": "Không có cột nào trực tuyến.",
    "The pole refused": "Cột từ chối",
    "Expires": "Hết hạn",
    "List the holds": "Xem các lệnh phong tỏa",
    "days: 1 to 365": "số ngày: từ 1 đến 365",
    "window: 1 to 15 minutes": "khoảng thời gian: từ 1 đến 15 phút",
    "Other sightings nearby": "Các lần xuất hiện khác gần đó",
    "Minutes before and after": "Số phút trước và sau",
    "Also the neighbouring poles": "Thêm các cột lân cận",
    "Cases": "Hồ sơ",
    "Case": "Hồ sơ",
    "queued": "đang chờ",
    "running": "đang chạy",
    "Waiting for other cases to finish pulling footage ({n} ahead)":
        "Đang chờ các hồ sơ khác lấy xong video (còn {n} hồ sơ trước)",
    "done": "xong",
    "failed": "thất bại",
    "Pulling footage from the poles…": "Đang lấy video từ các cột…",
    "Holding footage on the poles…": "Đang phong tỏa dữ liệu trên các cột…",
    "The case could not be built": "Không lập được hồ sơ",
    "Verified: every clip is signed by its pole": "Đã xác minh: mọi đoạn video đều có chữ ký của cột",
    "NOT verified — see the reasons below": "CHƯA xác minh — xem lý do bên dưới",
    "Clip": "Đoạn video",
    "Verified": "Đã xác minh",
    "Problems": "Vấn đề",
    "Snapshots": "Ảnh chụp",
    "Download the case (zip)": "Tải hồ sơ (zip)",
    "Trail": "Lộ trình",
    # search: paging, the place filter, refusals
    "Unknown class {v}": "Loại không hợp lệ {v}",
    "Colour: a colour name (letters only)": "Màu: tên một màu (chỉ chữ cái)",
    "Unknown pole {v}": "Cột không có trong danh mục {v}",
    "Since: not a date and time": "Từ: không phải ngày giờ hợp lệ",
    "Until: not a date and time": "Đến: không phải ngày giờ hợp lệ",
    "Distance: one of {v} m": "Khoảng cách: một trong các giá trị {v} m",
    "Pole {p} has no position in the inventory: no place to search around.":
        "Cột {p} chưa có tọa độ trong danh mục: không thể tìm quanh vị trí này.",
    "The page link is damaged. Start again from the first page.":
        "Liên kết trang bị hỏng. Hãy tìm lại từ trang đầu.",
    "{n} results": "{n} kết quả",
    "Showing {n} of {total} results, newest first": "Hiển thị {n} trong {total} kết quả, mới nhất trước",
    "Showing {n} of at least {total} results, newest first":
        "Hiển thị {n} trong ít nhất {total} kết quả, mới nhất trước",
    "Near pole": "Gần cột",
    "Anywhere": "Mọi nơi",
    "within": "trong bán kính",
    "no position in the inventory": "chưa có tọa độ trong danh mục",
    "Poles within {r} m": "Các cột trong bán kính {r} m",
    "First page": "Trang đầu",
    "Newer results": "Kết quả mới hơn",
    "Older results": "Kết quả cũ hơn",
    # the colour names of node.vision.appearance.COLOUR_NAMES (events carry them in English)
    "black": "đen", "white": "trắng", "grey": "xám", "red": "đỏ", "orange": "cam", "yellow": "vàng",
    "brown": "nâu", "green": "xanh lá", "blue": "xanh dương", "purple": "tím", "pink": "hồng",
}

CATALOGUE = {"vi": VI, "en": {}}


def translate(lang: str, text: str, **kw: object) -> str:
    s = CATALOGUE.get(lang, {}).get(text, text)
    return s.format(**kw) if kw else s


def ascii_fold(text: str) -> str:
    """Vietnamese written without its marks ("Vụ việc Đồng Xuân" → "Vu viec Dong Xuan"): for
    names that travel where only ASCII is allowed (a legal hold's name on the node)."""
    plain = unicodedata.normalize("NFKD", text.replace("đ", "d").replace("Đ", "D"))
    return "".join(ch for ch in plain if not unicodedata.combining(ch)).encode("ascii", "ignore").decode()


def pick_lang(asked: str | None) -> str:
    """The session's choice, else Vietnamese (the post's PCs may well run an English system:
    the browser's language says little about the officer's)."""
    return str(asked) if asked in LANGS else DEFAULT_LANG


class WardTime:
    """Formats UTC instants in the ward's zone (``dd/mm/yyyy HH:MM:SS`` as read in Vietnam)."""

    def __init__(self, tz: str = DEFAULT_TZ) -> None:
        self.zone = ZoneInfo(tz)
        self.name = tz

    def local(self, t: datetime | str | None) -> datetime | None:
        if t is None or t == "":
            return None
        if isinstance(t, str):
            try:
                t = datetime.fromisoformat(t.replace("Z", "+00:00"))
            except ValueError:
                return None
        if t.tzinfo is None:  # stored UTC without zone (SQLite)
            t = t.replace(tzinfo=UTC)
        return t.astimezone(self.zone)

    def fmt(self, t: datetime | str | None, with_date: bool = True) -> str:
        lt = self.local(t)
        if lt is None:
            return "—"
        return lt.strftime("%d/%m/%Y %H:%M:%S" if with_date else "%H:%M:%S")

    def parse_local(self, text: str) -> datetime | None:
        """A ``datetime-local`` form value (ward time) → aware UTC; None when empty/invalid."""
        text = (text or "").strip()
        if not text:
            return None
        try:
            t = datetime.fromisoformat(text)
            if t.tzinfo is None:
                t = t.replace(tzinfo=self.zone)
            return t.astimezone(UTC)
        except (ValueError, OverflowError):  # (year 1 east of UTC does not exist in UTC)
            return None
