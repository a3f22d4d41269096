"""The project's canonical URLs and the identifier systems it relies on, defined once.

Every profile, extension, code system, value set, concept map and search parameter the project
publishes lives under ``BASE``; build their URLs with the helpers here rather than typing them.
"""

BASE = "https://termtem.org/fhir"


def structure_definition(id_: str) -> str:
    """Canonical URL of one of our StructureDefinitions (profiles and extensions)."""
    return f"{BASE}/StructureDefinition/{id_}"


def code_system(id_: str) -> str:
    return f"{BASE}/CodeSystem/{id_}"


def value_set(id_: str) -> str:
    return f"{BASE}/ValueSet/{id_}"


def concept_map(id_: str) -> str:
    return f"{BASE}/ConceptMap/{id_}"


def search_parameter(id_: str) -> str:
    return f"{BASE}/SearchParameter/{id_}"


# Identifier systems (see shared reference notes on Thai standards; SIL-TH proposals).
CID_SYSTEM = "https://terms.sil-th.org/id/th-cid"
PASSPORT_THA_SYSTEM = "http://hl7.org/fhir/sid/passport-THA"
HCODE_SYSTEM = "https://terms.sil-th.org/id/th-moph-hcode"
# Students without a CID carry a Ministry of Education G-code; no public URI exists, so it is ours.
GCODE_SYSTEM = f"{BASE}/id/moe-gcode"
SCHOOL_CODE_SYSTEM = f"{BASE}/id/bma-school-code"


def local_record_system(hcode: str, kind: str) -> str:
    """System for a facility-local number (HN, PID, ...) following the SIL-TH pattern."""
    return f"https://terms.sil-th.org/hcode/{len(hcode)}/{hcode}/{kind}"


# Ids of our conformance resources. Everyone builds URLs from these so the generator, the mappers,
# the profiles and the terminology agree. The full URL is e.g. structure_definition(PROFILE_CHILD_PATIENT).
PROFILE_CHILD_PATIENT = "th-child-patient"
PROFILE_GUARDIAN = "th-guardian"
PROFILE_GROWTH = "th-growth-observation"
PROFILE_DEVELOPMENTAL_SCREENING = "th-developmental-screening"
PROFILE_WELLBEING = "th-wellbeing-assessment"
PROFILE_REFERRAL = "th-referral"
PROFILE_REFERRAL_TASK = "th-referral-task"
PROFILE_CONSENT = "th-data-sharing-consent"
PROFILE_AGENCY = "th-agency"

EXT_DOPA_ADDRESS_CODE = "th-dopa-address-code"  # Address: province/district/subdistrict DOPA codes
EXT_NAME_PREFIX = "th-name-prefix"  # HumanName: DOPA name-prefix code

CS_DSPM_DOMAIN = "th-dspm-domain"  # GM FM RL EL PS
CS_DSPM_RESULT = "th-dspm-result"  # pass, suspected-delay, delay
CS_DSPM_AGE_BAND = "th-dspm-age-band"  # 9 18 30 42 60 (months)
CS_SCREENING_TOOL = "th-screening-tool"  # DSPM, DAIM
CS_MOPH_SPECIALPP = "moph-specialpp"
CS_MOPH_CHILDDEVELOP = "moph-childdevelop"
CS_MOPH_SEX = "moph-sex"
CS_DOPA_NAME_PREFIX = "dopa-name-prefix"
CS_MOPH_NATION = "moph-nation"
CS_MOPH_RELIGION = "moph-religion"
CS_MOPH_EDUCATION = "moph-education"
CS_MOPH_MSTATUS = "moph-mstatus"
CS_MOPH_TYPEAREA = "moph-typearea"
CS_MOPH_VACCINE = "moph-epi-vaccine"
CS_ADMIN_AREA = "th-admin-area"  # DOPA province (2 digits) > district (4) > subdistrict (6)
CS_AGENCY_TYPE = "th-agency-type"
CS_GUARDIAN_RELATIONSHIP = "th-guardian-relationship"  # our codes beyond v3 RoleCode (legal guardian)
CS_REFERRAL_CATEGORY = "th-referral-category"
CS_REFERRAL_REASON = "th-referral-reason"
CS_WELLBEING_DIMENSION = "th-wellbeing-dimension"
CS_WELLBEING_LEVEL = "th-wellbeing-level"
CS_DATA_CLASS = "th-data-class"
CS_IDENTIFIER_TYPE = "th-identifier-type"
CS_LAWFUL_BASIS = "th-lawful-basis"

VS_GUARDIAN_RELATIONSHIP = "th-guardian-relationship"
VS_CONSENT_PURPOSE = "th-consent-purpose"  # subset of v3 PurposeOfUse

# --- Terminology (issue 6): value sets and concept maps shipped in terminology/ --------------------
# Every code system above also has an all-codes ValueSet with the same id: value_set(CS_DSPM_RESULT).
VS_ADMIN_AREA = CS_ADMIN_AREA  # all levels
VS_ADMIN_AREA_PROVINCE = "th-admin-area-province"
VS_ADMIN_AREA_DISTRICT = "th-admin-area-district"
VS_ADMIN_AREA_SUBDISTRICT = "th-admin-area-subdistrict"
CM_DSPM_RESULT_TO_MOPH = "th-dspm-result-to-moph"  # to SPECIALPP 1B26x and NUTRITION.CHILDDEVELOP
CM_MOPH_TO_DSPM_RESULT = "moph-to-th-dspm-result"
CM_MOPH_SEX_TO_GENDER = "moph-sex-to-administrative-gender"
CM_MOPH_MSTATUS_TO_MARITAL_STATUS = "moph-mstatus-to-marital-status"
CM_MOPH_VACCINE_TO_CVX = "moph-epi-vaccine-to-cvx"

# --- Legacy mappers (issue 8, fhir_server/mapping and mappings/): identifier systems and the external
# code systems their mapping specs write. Appended by the mappers; add new ids for the mappers here.
# A resource made from one legacy record that has no business number of its own (an Observation from a
# 43-file NUTRITION row, a case's referral) carries a key under this system so a re-import updates it.
LEGACY_RECORD_SYSTEM = f"{BASE}/id/legacy-record"
CHILDCARE_CENTRE_SYSTEM = f"{BASE}/id/bma-childcare-centre"  # BMA childcare centre code
MSDHS_CASE_SYSTEM = f"{BASE}/id/msdhs-case"  # social-welfare case number
MSDHS_AGENCY_SYSTEM = f"{BASE}/id/msdhs-agency"  # MSDHS / partner agency code used on case forms


def student_number_system(school_code: str) -> str:
    """System for the student numbers one school issues (a student number is unique per school)."""
    return f"{BASE}/id/bma-school/{school_code}/student"


LOINC_SYSTEM = "http://loinc.org"
UCUM_SYSTEM = "http://unitsofmeasure.org"
ICD10_SYSTEM = "http://hl7.org/fhir/sid/icd-10"
OBSERVATION_CATEGORY_SYSTEM = "http://terminology.hl7.org/CodeSystem/observation-category"
V3_ROLE_CODE_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-RoleCode"
V3_ACT_REASON_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
CONSENT_SCOPE_SYSTEM = "http://terminology.hl7.org/CodeSystem/consentscope"
CONSENT_CATEGORY_LOINC = "59284-0"  # LOINC "Patient Consent"
ALLERGY_CLINICAL_STATUS_SYSTEM = "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical"
ALLERGY_VERIFICATION_SYSTEM = "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification"
CONDITION_CLINICAL_STATUS_SYSTEM = "http://terminology.hl7.org/CodeSystem/condition-clinical"
CONDITION_CATEGORY_SYSTEM = "http://terminology.hl7.org/CodeSystem/condition-category"
EXT_PATIENT_NATIONALITY = "http://hl7.org/fhir/StructureDefinition/patient-nationality"
EXT_PATIENT_RELIGION = "http://hl7.org/fhir/StructureDefinition/patient-religion"
V3_ACT_CODE_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
PASSPORT_UNKNOWN_COUNTRY_SYSTEM = "https://terms.sil-th.org/id/passport"  # SIL-TH: issuing country unknown
# --- end of the legacy mappers' block ---

# --- Profiles and validation (issue 5): extra extension and search-parameter ids -----------------
EXT_DSPM_AGE_BAND = "th-dspm-age-band"  # Observation: DSPM screening age band (9/18/30/42/60 months)
EXT_LAWFUL_BASIS = "th-lawful-basis"  # Consent: PDPA lawful basis (s.19 consent, s.24, s.26)
EXT_CONSENT_AGENCY_TYPE = "th-consent-agency-type"  # Consent.provision: actor given as an agency type
SP_PATIENT_CID = "Patient-cid"  # Patient?cid=<13 digits>
SP_PATIENT_GCODE = "Patient-gcode"  # Patient?gcode=G...
SP_PATIENT_PROVINCE = "Patient-province"  # Patient?province=<DOPA 2-digit code>
SP_RELATEDPERSON_CID = "RelatedPerson-cid"
SP_OBSERVATION_DSPM_RESULT = "Observation-dspm-result"  # overall DSPM result code
SP_SERVICEREQUEST_PERFORMER_AGENCY = "ServiceRequest-performer-agency"
SP_SERVICEREQUEST_REQUESTER_AGENCY = "ServiceRequest-requester-agency"
SP_TASK_OWNER_AGENCY = "Task-owner-agency"
SP_CONSENT_LAWFUL_BASIS = "Consent-lawful-basis"
# --- end of the profiles block ---

# --- The child summary (issue 17) ----------------------------------------------------------------
CS_GROWTH_INDICATOR = "th-growth-indicator"  # wfa lhfa wflh bmifa hcfa: WHO z-score indicators
CS_NUTRITION_STATUS = "th-nutrition-status"  # Thai growth-monitoring bands and the summary's flags
CS_SUMMARY_SECTION = "th-summary-section"  # identity, guardians, growth, ... (Composition.section.code)
CS_WELLBEING_SCORE = "th-wellbeing-score"  # overall: the worst dimension level of a scored flower
PROFILE_WELLBEING_SCORE = "th-wellbeing-score"  # one scored dimension (or the overall level) of a flower
QUESTIONNAIRE_WELLBEING = "th-wellbeing-flower"  # the four-dimension assessment, shipped as data
# --- end of the summary block ---

# --- Pregnancy, birth and newborn (issue 22) --------------------------------------------------------
# The mother's pregnancy is an EpisodeOfCare of the mother; antenatal and postnatal visits, screening
# results and the delivery are hers (her compartment). The newborn's birth record (birth encounter,
# birth observations, newborn-care visits) is the child's own and points at the mother's episode.
PROFILE_PREGNANCY = "th-pregnancy"  # EpisodeOfCare: gravida, LMP, EDC, outcome
PROFILE_PREGNANCY_STATUS = "th-pregnancy-status"  # Observation LOINC 82810-3 (as TH Core's, back-ported)
PROFILE_ANTENATAL_VISIT = "th-antenatal-visit"  # Encounter: gestational age, ANC period, result
PROFILE_ANTENATAL_SCREENING = "th-antenatal-screening"  # Observation: VDRL, HBsAg, HIV, thalassaemia, Hct
PROFILE_DELIVERY = "th-delivery"  # Procedure: the mother's delivery (date, place, method, births)
PROFILE_BIRTH = "th-birth"  # Encounter of the newborn: its birth, linked to the mother's pregnancy
PROFILE_BIRTH_OBSERVATION = "th-birth-observation"  # Observation: weight, GA at birth, Apgar, TSH
PROFILE_PERINATAL_VISIT = "th-perinatal-visit"  # Encounter: postnatal (mother), newborn care (child)
PROFILE_PERINATAL_RISK = "th-perinatal-risk"  # Observation: a risk flag computed from the data
PROFILE_NEWBORN_VITAMIN_K = "th-newborn-vitamin-k"  # MedicationAdministration: vitamin K at birth

EXT_GRAVIDA = "th-gravida"  # EpisodeOfCare: which pregnancy of the mother (1, 2, ...)
EXT_LAST_MENSTRUAL_PERIOD = "th-last-menstrual-period"  # EpisodeOfCare: LMP (date)
EXT_ESTIMATED_DELIVERY_DATE = "th-estimated-delivery-date"  # EpisodeOfCare: EDC (date)
EXT_PREGNANCY_OUTCOME = "th-pregnancy-outcome"  # EpisodeOfCare, Procedure: ICD-10 outcome of delivery
EXT_GESTATIONAL_AGE = "th-gestational-age"  # Encounter: completed weeks of pregnancy at the visit
EXT_ANC_PERIOD = "th-anc-period"  # Encounter: the 43-file ANC period (ANCNO 1-5)
EXT_VISIT_RESULT = "th-visit-result"  # Encounter: normal / abnormal / unknown
EXT_BIRTH_PLACE_TYPE = "th-birth-place-type"  # Procedure, Encounter: hospital, health centre, home, ...
EXT_BIRTH_ATTENDANT = "th-birth-attendant"  # Procedure, Encounter: doctor, nurse, ..., self
EXT_DELIVERY_METHOD = "th-delivery-method"  # Procedure, Encounter: normal, caesarean, vacuum, ...
EXT_LIVE_BIRTHS = "th-live-births"  # Procedure: number born alive
EXT_STILLBIRTHS = "th-stillbirths"  # Procedure: number stillborn
EXT_PERSON_RECORD = "th-person-record"  # RelatedPerson: the Patient record of the same person (mother)
# HL7's R4 extension naming the episode of care an Observation or Procedure belongs to.
EXT_WORKFLOW_EPISODE = "http://hl7.org/fhir/StructureDefinition/workflow-episodeOfCare"

CS_PERINATAL_RISK = "th-perinatal-risk"  # low-birth-weight, preterm, teenage-mother, ...
CS_PERINATAL_EVENT = "th-perinatal-event"  # pregnancy, antenatal, delivery, birth, postnatal, newborn-care
CS_PERINATAL_SCREENING = "th-perinatal-screening"  # vdrl hbsag hiv thalassaemia haematocrit newborn-tsh
CS_MOPH_SCREENING_RESULT = "moph-screening-result"  # PRENATAL *_RESULT, THALASSEMIA: 1 2 3 4 9
CS_MOPH_ANC_PERIOD = "moph-anc-period"  # ANC.ANCNO 1-5
CS_MOPH_VISIT_RESULT = "moph-visit-result"  # ANCRESULT, PPRESULT, BCARERESULT: 1 2 9
CS_MOPH_BIRTH_PLACE = "moph-birth-place"  # LABOR/NEWBORN.BPLACE 1-5
CS_MOPH_DELIVERY_TYPE = "moph-delivery-type"  # LABOR/NEWBORN.BTYPE 1-6
CS_MOPH_BIRTH_ATTENDANT = "moph-birth-attendant"  # LABOR/NEWBORN.BDOCTOR 1-6
CS_MOPH_NEWBORN_FOOD = "moph-newborn-food"  # NEWBORNCARE.FOOD 1-4

# A newborn registered before it has a CID: "<mother's CID>-<birth date YYYYMMDD>-<birth order>"
# (birth order 1 for a singleton, 1, 2, ... for twins). Exact equality means the same child, so a
# later record carrying it (and the CID) is the same Patient.
NEWBORN_ID_SYSTEM = f"{BASE}/id/th-newborn"

SP_OBSERVATION_BIRTH_WEIGHT = "Observation-birth-weight"  # Observation?birth-weight=lt2500
SP_OBSERVATION_GESTATIONAL_AGE = "Observation-gestational-age"  # at birth, weeks
SP_ENCOUNTER_GESTATIONAL_AGE = "Encounter-gestational-age"  # at an antenatal visit, weeks
SP_OBSERVATION_EPISODE_OF_CARE = "Observation-episode-of-care"  # the pregnancy a screening result is in
SP_PROCEDURE_EPISODE_OF_CARE = "Procedure-episode-of-care"  # the pregnancy a delivery ended
SP_EPISODEOFCARE_EDC = "EpisodeOfCare-edc"  # expected delivery date of a pregnancy
SP_RELATEDPERSON_PERSON_RECORD = "RelatedPerson-person-record"  # the mother's own Patient
# --- end of the pregnancy block ---

# --- Identity (issue 14, fhir_server/identity): golden records, links and review -------------------
IDENTITY_TAG_SYSTEM = f"{BASE}/tag/identity"  # server-set tag codes: golden, review, retired
IDENTITY_BLOCK_TAG_SYSTEM = f"{BASE}/tag/identity-block"  # golden records: blocking keys for matching
EXT_IDENTITY_SOURCE = "th-identity-source"  # any element of a golden record: the source record it came from
EXT_IDENTITY_LINK = "th-identity-link"  # golden Patient.link: assurance, method, rule, when, by
EXT_IDENTITY_CANDIDATE = "th-identity-candidate"  # legacy bodies; now identity.review
EXT_IDENTITY_NOT_MATCH = "th-identity-not-match"  # golden Patient: a steward said "not the same child"
EXT_GUARDIAN_IDENTIFIER = "th-guardian-identifier"  # golden Patient.contact: the guardian's CID
# --- end of the identity block ---

# --- Workflow (issue 16): referrals, requests for help, deadlines, subscriptions ------------------
SP_TASK_DUE_DATE = "Task-due-date"  # Task?due-date=lt2026-01-01 (Task.restriction.period.end)
SP_TASK_OVERDUE = "Task-overdue"  # Task?overdue=true: open and past due (computed when searched)
SP_PATIENT_DISTRICT = "Patient-district"  # Patient?district=<DOPA 4-digit code>; Task?patient.district=
QUESTIONNAIRE_HELP_REQUEST = "th-help-request"  # the อพม. Smart request for help
CS_HELP_PROBLEM = "th-help-problem"  # poverty, violence, neglect, disability, homelessness, education
CS_HELP_URGENCY = "th-help-urgency"
CS_WORKFLOW = "th-workflow"  # triage (Task.code), help-case (EpisodeOfCare.type), overdue-notice
HELP_REQUEST_SYSTEM = f"{BASE}/id/help-request"  # the case and triage task of one request (value: QR id)
OVERDUE_NOTICE_SYSTEM = f"{BASE}/id/overdue-notice"  # one notice per referral and due date
# Server-set tags on referral versions: who made the change, and the status a task was put on hold from.
TAG_CHANGED_BY = "changed-by"
TAG_HELD_FROM = "held-from"


def tag_system(id_: str) -> str:
    """System of one of the server's own tags (clients cannot set these)."""
    return f"{BASE}/tag/{id_}"


# --- end of the workflow block ---
