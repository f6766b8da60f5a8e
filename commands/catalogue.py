"""The sandbox catalogue: departments and their services, seeded by ``epay seed``.

Dubai Municipality's services are the ones named in the gateway's launch announcement;
the Roads and Transport Authority is a second department so that isolation is real.
Fees are in fils; ``None`` is a variable fee given by the department (fines, bills).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ServiceSpec:
    code: str
    name_en: str
    name_ar: str
    fee: int | None
    exempt_from_added_fees: bool = False


@dataclass(frozen=True)
class DepartmentSpec:
    code: str
    name_en: str
    name_ar: str
    services: tuple[ServiceSpec, ...]


DEPARTMENTS = (
    DepartmentSpec(
        "DM",
        "Dubai Municipality",
        "بلدية دبي",
        (
            ServiceSpec("HEALTH_CERT", "Health certificate", "الشهادة الصحية", 22000),
            ServiceSpec("FOOD_CONTROL", "Food control", "الرقابة على الأغذية", 50000),
            ServiceSpec("MEDICAL_CERT", "Medical certificate", "الشهادة الطبية", 30000),
            ServiceSpec("VET_CERT", "Veterinary certificate", "الشهادة البيطرية", 15000),
            ServiceSpec("LAND_USE", "Land-use classification", "تصنيف استعمالات الأراضي", 100000),
            ServiceSpec(
                "HAZARDOUS_WASTE", "Hazardous-waste treatment", "معالجة النفايات الخطرة", 75000
            ),
            ServiceSpec(
                "MATERIAL_TEST",
                "Engineering-material test results",
                "نتائج فحوصات المواد الهندسية",
                40000,
            ),
            ServiceSpec("BUILDING_MARKING", "Building marking", "تحديد علائم البناء", 60000),
            # Charged by floor area, so the department gives the amount; the added fees apply.
            ServiceSpec("BUILDING_PERMIT", "Building permit", "رخصة البناء", None),
            ServiceSpec(
                "CENTRAL_BILL",
                "Central bill collection",
                "الخدمات المركزية لتحصيل الفواتير",
                None,
                exempt_from_added_fees=True,
            ),
            ServiceSpec(
                "SEWERAGE_IRRIGATION", "Sewerage and irrigation", "خدمات الصرف الصحي والري", 25000
            ),
            ServiceSpec(
                "PARKING_FINE",
                "Parking fine",
                "غرامة مواقف السيارات",
                None,
                exempt_from_added_fees=True,
            ),
        ),
    ),
    DepartmentSpec(
        "RTA",
        "Roads and Transport Authority",
        "هيئة الطرق والمواصلات",
        (
            ServiceSpec(
                "VEHICLE_RENEWAL", "Vehicle registration renewal", "تجديد ترخيص المركبة", 40000
            ),
            ServiceSpec(
                "TRAFFIC_FINE", "Traffic fine", "مخالفة مرورية", None, exempt_from_added_fees=True
            ),
        ),
    ),
)

SANDBOX_E_DIRHAM_CARDS = (
    # (number, PIN, balance in fils, blocked)
    ("7840000000000017", "1234", 500000, False),
    ("7840000000000025", "1234", 5000, False),
    ("7840000000000033", "1234", 0, True),
)
